"""The live route table: validated changes applied atomically, persisted, audited."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway import metrics
from gateway.routes import RouteTable, load_table, save_table
from tritium.errors import RepositoryError

audit_log = logging.getLogger("tritium.gateway.audit")


@dataclass(frozen=True)
class AuditRecord:
    at: str
    who: str
    action: str
    model: str
    detail: str


class RouteStore:
    """Holds the current table; readers take `table` (an immutable snapshot) without locking."""

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
        self, model: str, action: str, who: str, mutate: Callable[[RouteTable], RouteTable], detail: str = ""
    ) -> RouteTable:
        """Apply `mutate` to the current table; nothing changes unless it validates and persists."""
        async with self._lock:
            new_table = mutate(self._table)
            try:
                save_table(new_table, self.route_file)
            except OSError as exc:
                raise RepositoryError(
                    f"could not write route file {self.route_file}: {exc.strerror or exc}",
                    hint="check the path and its permissions; the routes were not changed",
                ) from None
            self._table = new_table
            self._audit(AuditRecord(_utc_now(), who, action, model, detail))
            metrics.ROUTE_CHANGES.labels(model=model, action=action).inc()
            metrics.publish_canaries(new_table)
            return new_table

    def audit_only(self, model: str, action: str, who: str, detail: str = "") -> None:
        """Record an admin action that does not change the routes (model load/unload)."""
        self._audit(AuditRecord(_utc_now(), who, action, model, detail))

    def _audit(self, record: AuditRecord) -> None:
        self.history.append(record)
        line = json.dumps(asdict(record))
        audit_log.info("route change %s", line)
        if self.audit_file is not None:
            try:
                with self.audit_file.open("a") as f:
                    f.write(line + "\n")
            except OSError as exc:
                audit_log.error("could not append to audit file %s: %s", self.audit_file, exc)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
