"""The live route table: validated changes applied atomically, persisted, audited."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from gateway import metrics
from gateway.routes import Route, RouteTable, load_table, save_table
from tritium.errors import RepositoryError

audit_log = logging.getLogger("tritium.gateway.audit")


@dataclass(frozen=True)
class AuditRecord:
    at: str
    who: str
    action: str
    model: str
    detail: str


class _Unconditional(Enum):
    ANY = "any"


ANY_ROUTE = _Unconditional.ANY
"""`based_on` for a change that applies whatever the current route is (PUT, DELETE)."""
BasedOn = Route | _Unconditional | None


class RouteConflictError(RepositoryError):
    """The route changed (e.g. the canary controller rolled it back) after a change was built from it."""


class RouteStore:
    """Holds the current table; readers take `table` (an immutable snapshot) without locking.

    Changes are serialised by a lock. The file I/O (route file with fsync, audit line) runs in a
    worker thread so that inference on the event loop never waits for the disk; the in-memory
    table switches only after the route file is written, so a failed write changes nothing and a
    restart reads back exactly what was served.
    """

    def __init__(self, route_file: Path, audit_file: Path | None = None, history: int = 1000) -> None:
        self.route_file = route_file
        self.audit_file = audit_file
        self._table = load_table(route_file)
        self._lock = asyncio.Lock()
        self.history: deque[AuditRecord] = deque(maxlen=history)
        metrics.publish_canaries(self._table)

    @property
    def table(self) -> RouteTable:
        return self._table

    async def change(
        self,
        model: str,
        action: str,
        who: str,
        mutate: Callable[[RouteTable], RouteTable],
        detail: str = "",
        *,
        based_on: BasedOn = ANY_ROUTE,
    ) -> RouteTable:
        """Apply `mutate` to the current table; nothing changes unless it validates and persists.

        With `based_on` (the route of `model` the change was built from), this is a compare-and-set:
        if the route is no longer that one, nothing changes and `RouteConflictError` (409) is raised.
        """
        async with self._lock:
            if based_on is not ANY_ROUTE and self._table.routes.get(model) != based_on:
                raise RouteConflictError(
                    f"the route of {model!r} changed while this change was being made",
                    hint=f"see the new route with `tritium routes show {model}` and retry",
                )
            new_table = mutate(self._table)
            record = AuditRecord(_utc_now(), who, action, model, detail)
            commit = asyncio.ensure_future(self._commit(new_table, record))
            try:
                await asyncio.shield(commit)
            except asyncio.CancelledError:
                # A started write cannot be stopped: finish it under the lock, so the table matches the file.
                await asyncio.wait({commit})
                if not commit.cancelled():
                    commit.exception()  # retrieved: the caller was cancelled and will not see it
                raise
            metrics.ROUTE_CHANGES.labels(model=model, action=action).inc()
            metrics.publish_canaries(new_table)
            return new_table

    async def _commit(self, new_table: RouteTable, record: AuditRecord) -> None:
        try:
            await asyncio.to_thread(save_table, new_table, self.route_file)
        except OSError as exc:
            raise RepositoryError(
                f"could not write route file {self.route_file}: {exc.strerror or exc}",
                hint="check the path and its permissions; the routes were not changed",
            ) from None
        self._table = new_table
        await self._audit(record)

    async def audit_only(self, model: str, action: str, who: str, detail: str = "") -> None:
        """Record an admin action that does not change the routes (model load/unload)."""
        async with self._lock:
            await self._audit(AuditRecord(_utc_now(), who, action, model, detail))

    async def _audit(self, record: AuditRecord) -> None:
        self.history.append(record)
        line = json.dumps(asdict(record))
        audit_log.info("route change %s", line)
        if self.audit_file is not None:
            try:
                await asyncio.to_thread(_append_line, self.audit_file, line)
            except OSError as exc:
                audit_log.error("could not append to audit file %s: %s", self.audit_file, exc)


def _append_line(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
