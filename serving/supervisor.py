"""Keep a Triton serving: start it, stream its log, watch it, and restart it after a failure.

``tritium serve --restart on-failure`` is for people who use it as their server. A failure is an
exit that was not asked for with a code other than 0 (a crash, a kill, an OOM kill), as in Docker's
policy of the same name. Restarts wait a bounded exponential backoff (1 s doubling to 30 s) so a
server that cannot come up does not spin; once it has stayed up for a minute the backoff and the
run of failures start over. ``--max-restarts N`` gives up after N restarts in a row that did not
stay up that long. The runtime object is reused, so a restart serves on the same ports.

The first start is never retried: a wrong flag, port or repository fails at once, in one line.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tritium.errors import UnavailableError
from tritium.serving.runtime import ExitStatus, TritonRuntime

POLL_S = 0.5


@dataclass
class Backoff:
    """Delays between restarts; pure, so the schedule is tested without waiting for it."""

    max_in_a_row: int
    initial_s: float = 1.0
    max_s: float = 30.0
    healthy_after_s: float = 60.0
    in_a_row: int = field(default=0, init=False)

    def next_delay(self, up_s: float) -> float | None:
        """The wait before the next restart of a server that was up ``up_s``; ``None``: give up."""
        if up_s >= self.healthy_after_s:
            self.in_a_row = 0
        if self.in_a_row >= self.max_in_a_row:
            return None
        delay = min(self.max_s, self.initial_s * 2**self.in_a_row)
        self.in_a_row += 1
        return delay


class _LogStream:
    """Streams one run's log lines to ``emit`` from a daemon thread."""

    def __init__(self, emit: Callable[[str], None] | None) -> None:
        self.emit = emit
        self._stop = threading.Event()

    def start(self, runtime: TritonRuntime) -> None:
        self.stop()
        if self.emit is None:
            return
        self._stop = threading.Event()
        threading.Thread(target=runtime.follow_log, args=(self.emit, self._stop), daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Supervisor:
    """Runs ``runtime`` until stopped; the CLI supplies how to print (``say``) and the log's sink."""

    runtime: TritonRuntime
    ready_timeout_s: float
    say: Callable[[str], None]
    log: Callable[[str], None] | None = None
    log_hint: str = "its log is above"
    restart_on_failure: bool = False
    max_restarts: int = 5
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    restarts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._log = _LogStream(self.log)
        self._backoff = Backoff(self.max_restarts)

    def start(self) -> None:
        """Start and wait until ready; a failure here is final (raised as it is)."""
        self.runtime.start()
        self._log.start(self.runtime)
        self.runtime.wait_ready(self.ready_timeout_s)

    def watch(self, on_restarted: Callable[[], None] = lambda: None) -> None:
        """Block while Triton serves; restart it after a failure if asked to. Returns only by raising."""
        up_since = self.clock()
        while True:
            while self.runtime.is_running():
                self.sleep(POLL_S)
            status = self.runtime.exit_status() or ExitStatus(None, "stopped answering")
            up_s = self.clock() - up_since
            self._stop_run()  # reap it and remove what it left before anything else
            if not self.restart_on_failure or not status.failed:
                raise self._exited(status)
            self._restart(status, up_s)
            with contextlib.suppress(UnavailableError):  # died again at once: the loop counts it
                on_restarted()
            up_since = self.clock()

    def _restart(self, status: ExitStatus, up_s: float) -> None:
        """Start again after the backoff until one start is ready, or give up."""
        what = f"stopped ({status.describe()}) after {up_s:.0f} s up"
        while True:
            delay = self._backoff.next_delay(up_s)
            if delay is None:
                raise UnavailableError(
                    f"Triton {what}; gave up after {self.restarts} restart(s), "
                    f"{self._backoff.in_a_row} in a row without staying up {self._backoff.healthy_after_s:.0f} s",
                    hint=f"{self.log_hint}; --max-restarts allows more",
                )
            self.restarts += 1
            self.say(f"Triton {what}: restart {self.restarts} in {delay:.0f} s")
            self.sleep(delay)
            try:
                self.start()
            except UnavailableError as exc:
                what, up_s = f"did not come back ({exc.message})", 0.0
                self._stop_run()
                continue
            self.say(f"restart {self.restarts}: Triton is ready again at {self.runtime.grpc_url}")
            return

    def _exited(self, status: ExitStatus) -> UnavailableError:
        if self.restart_on_failure:
            hint = f"{self.log_hint}; exit code 0 is not a failure, so it was not restarted"
        else:
            hint = f"{self.log_hint}; --restart on-failure restarts it"
        restarted = f" after {self.restarts} restart(s)" if self.restarts else ""
        return UnavailableError(f"Triton stopped unexpectedly ({status.describe()}){restarted}", hint=hint)

    def _stop_run(self) -> None:
        self._log.stop()
        with _signals_deferred():
            self.runtime.stop()

    def stop(self) -> None:
        self._stop_run()


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends: a clean-up cut in half leaves stray processes.

    The handlers are swapped rather than the signals blocked: with other threads running (the log
    stream, gRPC), the kernel hands a blocked signal to one of them and Python runs the handler in
    the main thread anyway.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread has signal handlers to swap
        return
    received: list[int] = []
    deferred = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum)) for sig in deferred}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            signal.raise_signal(received[0])  # now, to whatever handler was there before
