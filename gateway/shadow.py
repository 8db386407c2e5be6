"""Fire-and-forget shadow requests: bounded, counted, never awaited by the client's request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from tritium.gateway import metrics
from tritium.gateway.router import Decision

log = logging.getLogger("tritium.gateway.shadow")


class ShadowDispatcher:
    def __init__(self, max_in_flight: int) -> None:
        self._max = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def submit(self, decision: Decision, send: Callable[[], Awaitable[bool]]) -> bool:
        """Start `send` (which returns whether the shadow answered OK) unless too many are in flight."""
        if len(self._tasks) >= self._max:
            self.dropped += 1
            metrics.SHADOW_REQUESTS.labels(
                model=decision.public_model, target=decision.variant, outcome="dropped"
            ).inc()
            return False
        task = asyncio.get_running_loop().create_task(self._run(decision, send))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, decision: Decision, send: Callable[[], Awaitable[bool]]) -> None:
        started = time.perf_counter()
        try:
            ok = await send()
        except Exception as exc:
            log.debug("shadow request to %s failed: %s", decision.label, exc)
            ok = False
        metrics.SHADOW_DURATION.labels(model=decision.public_model, target=decision.variant).observe(
            time.perf_counter() - started
        )
        outcome = "ok" if ok else "error"
        metrics.SHADOW_REQUESTS.labels(
            model=decision.public_model, target=decision.variant, outcome=outcome
        ).inc()

    async def drain(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
        for task in list(self._tasks):
            task.cancel()
