"""Many deadlines, one timer: request heads and bodies that arrive too slowly (gateway/http_protocol.py).

A timer per request (`asyncio.timeout`, `loop.call_later`) costs 1-4 µs of CPU on every request, a
visible share of the gateway's; registering here costs a dictionary entry. A watcher task checks
every entry every `tick_s` and calls the expiry of those that are due, so a deadline holds to
within `tick_s`. The watcher runs while there is something to watch and is started again by
`enter`, so nothing is left pending on a loop that closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable


class Deadlines:
    def __init__(self, tick_s: float = 0.25) -> None:
        self.tick_s = tick_s
        self._due: dict[Hashable, tuple[float, Callable[[], object]]] = {}
        self._watcher: asyncio.Task[None] | None = None

    def enter(self, key: Hashable, timeout_s: float, expire: Callable[[], object]) -> None:
        """Call `expire()` if `key` is still here `timeout_s` from now."""
        self._due[key] = (time.monotonic() + timeout_s, expire)
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def leave(self, key: Hashable) -> None:
        self._due.pop(key, None)

    def __len__(self) -> int:
        return len(self._due)

    async def _watch(self) -> None:
        try:
            while self._due:
                await asyncio.sleep(self.tick_s)
                now = time.monotonic()
                for key, (deadline, expire) in list(self._due.items()):
                    if deadline <= now:
                        del self._due[key]
                        expire()
        finally:
            self._watcher = None
