"""The live route table: validated changes applied atomically, persisted, audited."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from tritium.errors import RepositoryError, UserInputError
from tritium.gateway import metrics
from tritium.gateway.routes import Route, RouteTable, parse_table, save_table

log = logging.getLogger("tritium.gateway.routes")
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


Stamp = bytes | None
"""What identifies one version of the route file: a digest of its content; None when it is absent."""
_NOTHING_REJECTED = object()


class RouteStore:
    """Holds the current table; readers take `table` (an immutable snapshot) without locking.

    The route file is the source of truth, shared by every gateway process that names it: a change
    is made under an exclusive lock on a file beside it, against what the file holds then (so a
    compare-and-set also sees other processes' changes), and the table switches only after the
    file is written, so a failed write changes nothing and a restart reads back what was served.
    `refresh` picks up changes made by other processes or by an operator editing the file; an
    invalid edit is reported and the last good table keeps serving. File I/O runs in worker
    threads so that inference on the event loop never waits for the disk.
    """

    def __init__(self, route_file: Path, audit_file: Path | None = None, history: int = 1000) -> None:
        self.route_file = route_file
        self.audit_file = audit_file
        self.lock_file = route_file.with_name(f".{route_file.name}.lock")
        self._stamp, content = read_route_file(route_file)
        self._table = RouteTable() if content is None else parse_table(content, route_file)
        self._rejected_stamp: Stamp | object = _NOTHING_REJECTED
        self._unreadable_reported = False
        self._lock = asyncio.Lock()
        self.history: deque[AuditRecord] = deque(maxlen=history)
        metrics.publish_canaries(self._table)

    @property
    def table(self) -> RouteTable:
        return self._table

    async def refresh(self) -> bool:
        """Load the route file if it changed on disk since this process last read or wrote it.

        An edit that does not validate, and a file that was there and is now missing or empty (an
        editor truncating it, a botched copy), are reported once and ignored: the last good table
        keeps serving until the file holds a valid one again.
        """
        try:
            stamp, _ = await asyncio.to_thread(read_route_file, self.route_file)
            if stamp in (self._stamp, self._rejected_stamp):
                return False
            async with self._lock:
                stamp, content = await asyncio.to_thread(read_route_file, self.route_file)
                if stamp in (self._stamp, self._rejected_stamp):
                    return False
                try:
                    table = await asyncio.to_thread(self._table_on_disk, content)
                except UserInputError as exc:
                    self._rejected_stamp = stamp
                    metrics.ROUTE_RELOADS.labels(outcome="rejected").inc()
                    log.error(
                        "route file changed on disk but cannot be used, still serving the previous routes: %s",
                        exc.one_line(),
                    )
                    return False
                self._table, self._stamp = table, stamp
        except OSError as exc:
            if not self._unreadable_reported:
                log.error(
                    "cannot read route file %s, still serving the previous routes: %s", self.route_file, exc
                )
            self._unreadable_reported = True
            return False
        self._unreadable_reported = False
        metrics.ROUTE_RELOADS.labels(outcome="loaded").inc()
        metrics.publish_canaries(table)
        log.info("route file %s changed on disk: %d route(s) loaded", self.route_file, len(table.routes))
        return True

    def _table_on_disk(self, content: bytes | None) -> RouteTable:
        if content is None or not content.strip():
            if self._stamp is None:  # there never was a file: every model passes through
                return RouteTable()
            raise UserInputError(
                f"route file {self.route_file} is {'missing' if content is None else 'empty'}",
                hint="restore it; to remove every route write `routes: {}`",
            )
        return parse_table(content, self.route_file)

    async def watch(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("could not check the route file; will retry")

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
            record = AuditRecord(_utc_now(), who, action, model, detail)
            commit = asyncio.ensure_future(self._commit(model, mutate, based_on, record))
            try:
                new_table = await asyncio.shield(commit)
            except asyncio.CancelledError:
                # A started write cannot be stopped: finish it under the lock, so the table matches the file.
                await asyncio.wait({commit})
                if not commit.cancelled():
                    commit.exception()  # retrieved: the caller was cancelled and will not see it
                raise
            metrics.ROUTE_CHANGES.labels(model=model, action=action).inc()
            metrics.publish_canaries(new_table)
            return new_table

    async def _commit(
        self, model: str, mutate: Callable[[RouteTable], RouteTable], based_on: BasedOn, record: AuditRecord
    ) -> RouteTable:
        new_table, stamp = await asyncio.to_thread(self._transact, model, mutate, based_on, record)
        self._table, self._stamp = new_table, stamp
        self._remember(record)
        return new_table

    def _transact(
        self, model: str, mutate: Callable[[RouteTable], RouteTable], based_on: BasedOn, record: AuditRecord
    ) -> tuple[RouteTable, Stamp]:
        """Read, check, change and write the route file under the cross-process lock (in a thread)."""
        try:
            with _exclusive(self.lock_file):
                current = self._table
                stamp, content = read_route_file(self.route_file)
                if stamp != self._stamp and content is not None and content.strip():
                    current = self._table_on_disk(content)  # changed by another process or by hand
                # (a file that went missing or empty is rewritten from the table being served)
                if based_on is not ANY_ROUTE and current.routes.get(model) != based_on:
                    raise RouteConflictError(
                        f"the route of {model!r} changed while this change was being made",
                        hint=f"see the new route with `tritium routes show {model}` and retry",
                    )
                new_table = mutate(current)
                save_table(new_table, self.route_file)
                self._append_audit(record)
                return new_table, read_route_file(self.route_file)[0]
        except OSError as exc:
            raise RepositoryError(
                f"could not write route file {self.route_file}: {exc.strerror or exc}",
                hint="check the path and its permissions; the routes were not changed",
            ) from None

    async def audit_only(self, model: str, action: str, who: str, detail: str = "") -> None:
        """Record an admin action that does not change the routes (model load/unload)."""
        record = AuditRecord(_utc_now(), who, action, model, detail)
        async with self._lock:
            await asyncio.to_thread(self._append_audit, record)
            self._remember(record)

    def _remember(self, record: AuditRecord) -> None:
        self.history.append(record)
        audit_log.info("route change %s", json.dumps(asdict(record)))

    def _append_audit(self, record: AuditRecord) -> None:
        if self.audit_file is None:
            return
        try:
            _append_line(self.audit_file, json.dumps(asdict(record)))
        except OSError as exc:
            audit_log.error("could not append to audit file %s: %s", self.audit_file, exc)

    async def recent_audit(self, limit: int = 1000) -> list[AuditRecord]:
        """The last records of every process (from the audit file), or of this one without a file."""
        if self.audit_file is None or not self.audit_file.exists():
            return list(self.history)[-limit:]
        return await asyncio.to_thread(_read_audit_tail, self.audit_file, limit)


def _read_audit_tail(path: Path, limit: int) -> list[AuditRecord]:
    records = []
    for line in _tail_lines(path, limit):
        try:
            records.append(AuditRecord(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line cut by a crash mid-write, or not ours
    return records


def read_route_file(path: Path) -> tuple[Stamp, bytes | None]:
    """The file's content and its digest; (None, None) when there is no file."""
    try:
        content = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    return hashlib.blake2b(content, digest_size=16).digest(), content


def _open_private(path: Path, mode: str):  # type: ignore[no-untyped-def]
    """Open for appending; a file the gateway creates is readable by its owner only (0600)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), mode)


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with _open_private(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail_lines(path: Path, limit: int, chunk: int = 1 << 20) -> list[str]:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - chunk))
        lines = f.read().decode(errors="replace").splitlines()
    if size > chunk:
        lines = lines[1:]  # the first one is probably cut
    return lines[-limit:]


def _append_line(path: Path, line: str) -> None:
    with _open_private(path, "a") as f:  # who did what from where: 0600 like the route file
        f.write(line + "\n")


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
