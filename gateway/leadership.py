"""One leader among the gateway processes of a host: the first to lock a file, until it exits."""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import IO

log = logging.getLogger("tritium.gateway")


class FileLeadership:
    """Non-blocking `flock`: the kernel releases the lock when its holder exits, crash or not, so
    another process takes over at its next attempt."""

    def __init__(self, lock_file: Path, role: str) -> None:
        self.lock_file = lock_file
        self.role = role
        self._handle: IO[str] | None = None

    def is_leader(self) -> bool:
        if self._handle is not None:
            return True
        handle = self.lock_file.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._handle = handle
        log.info("this process now runs the %s", self.role)
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the last descriptor releases the lock
            self._handle = None
