"""The one interface `tritium serve` drives a Triton through, whichever runtime runs it.

:class:`tritium.serving.local.LocalTriton` (the bundled ``tritonserver``) and
:class:`tritium.serving.docker_runtime.DockerTriton` (the official image) both implement
:class:`TritonRuntime`; the CLI and the supervisor use nothing else, so a code path that works for
one runtime cannot reach for an attribute the other lacks. ``tests/serving/test_runtime_contract.py``
checks both classes against it, member by member, and runs the CLI against each.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Shells and Docker report a process killed by signal N as exit code 128 + N.
_SIGNAL_BASE = 128


@dataclass(frozen=True)
class ExitStatus:
    """How a Triton ended: an exit code in Docker's convention, or why none is known."""

    code: int | None
    reason: str | None = None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        """From :attr:`subprocess.Popen.returncode` (``-N`` when killed by signal N)."""
        return cls(_SIGNAL_BASE - returncode if returncode < 0 else returncode)

    @property
    def failed(self) -> bool:
        """Docker's ``on-failure``: anything but a clean exit 0 (an unknown end counts as a failure)."""
        return self.code != 0

    def describe(self) -> str:
        """``killed by SIGKILL, exit code 137``, ``exit code 1``, or the reason."""
        if self.code is None:
            return self.reason or "for an unknown reason"
        if self.code > _SIGNAL_BASE:
            try:
                return f"killed by {signal.Signals(self.code - _SIGNAL_BASE).name}, exit code {self.code}"
            except ValueError:
                pass
        return f"exit code {self.code}"


@runtime_checkable
class TritonRuntime(Protocol):
    """A Triton server this process starts, watches and stops (see the module docstring)."""

    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    failed_models: dict[str, str]
    """Models that did not load, with Triton's reason (filled by :meth:`wait_ready`)."""

    @property
    def http_url(self) -> str: ...

    @property
    def grpc_url(self) -> str: ...

    @property
    def metrics_url(self) -> str: ...

    @property
    def skipped_models(self) -> dict[str, str]:
        """Models in the repository this runtime cannot serve at all, with the reason."""
        ...

    def start(self) -> TritonRuntime:
        """Start the server (returns at once); a started runtime is left as it is."""
        ...

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until ready; :class:`UnavailableError` when it exits first or the time runs out."""
        ...

    def is_running(self) -> bool: ...

    def exit_status(self) -> ExitStatus | None:
        """How the server ended; ``None`` while it runs or before it started."""
        ...

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's log (for error messages)."""
        ...

    def follow_log(self, emit: Callable[[str], None], stop: threading.Event) -> None:
        """Pass each new log line of the current run to ``emit`` until ``stop`` is set or the run ends."""
        ...

    def load(self, model: str, versions: Sequence[int] | None = None) -> None: ...

    def unload(self, model: str) -> None: ...

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the server and remove what it left (processes, shared memory, containers); idempotent."""
        ...
