"""`tritium serve --restart on-failure`: the backoff schedule, and the real local Triton killed under it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tritium.cli import main
from tritium.serving.runtime import ExitStatus
from tritium.serving.supervisor import Backoff


def test_exit_status_in_dockers_convention():
    killed = ExitStatus.from_returncode(-9)
    assert killed.code == 137 and killed.failed
    assert killed.describe() == "killed by SIGKILL, exit code 137"
    assert ExitStatus.from_returncode(1).describe() == "exit code 1"
    assert not ExitStatus.from_returncode(0).failed
    assert ExitStatus(200).describe() == "exit code 200"  # 128 + 72 is no signal
    gone = ExitStatus(None, "its container was removed by someone else")
    assert gone.failed and gone.describe() == "its container was removed by someone else"


def test_backoff_doubles_to_a_cap_and_gives_up_after_max_in_a_row():
    backoff = Backoff(max_in_a_row=8)
    assert [backoff.next_delay(up_s=2) for _ in range(9)] == [1, 2, 4, 8, 16, 30, 30, 30, None]


def test_backoff_starts_over_once_the_server_stayed_up():
    backoff = Backoff(max_in_a_row=3)
    assert [backoff.next_delay(up_s=1) for _ in range(3)] == [1, 2, 4]
    assert backoff.next_delay(up_s=59) is None
    assert backoff.next_delay(up_s=60) == 1  # a minute up: a new run of failures
    assert backoff.in_a_row == 1


_DEFERRED = """
import os, signal, time
from tritium.serving.supervisor import _signals_deferred
received = []
signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(("handler", signum)))
with _signals_deferred():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # the interpreter would run a handler here
    received.append(("block", "done"))
print(received)
"""


def test_signals_wait_for_the_end_of_a_clean_up():
    # In a fresh interpreter, as in `tritium serve`: a SIGTERM sent to the pytest process itself, after
    # the OpenVINO/NNCF build tests have run in it, was seen to crash it (SIGSEGV in the delivery).
    result = subprocess.run([sys.executable, "-c", _DEFERRED], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str([("block", "done"), ("handler", int(signal.SIGTERM))])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-restarts", "3"], "--max-restarts needs --restart on-failure"),
        (["--check", "--restart", "on-failure"], "does not take --restart"),
        (["--runtime", "docker", "--log-file", "t.log"], "--log-file applies to --runtime local only"),
        (["--runtime", "docker", "--work-dir", "w"], "--work-dir applies to --runtime local only"),
        (["--image", "nvcr.io/nvidia/tritonserver:25.10-py3"], "--image applies to --runtime docker only"),
    ],
)
def test_flags_that_do_not_fit_together_are_exit_2(tiny_repository, capsys, args, message):
    assert main(["serve", "--repository", str(tiny_repository), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_max_restarts_must_be_a_positive_number(tiny_repository, capsys, value):
    args = ["serve", "--repository", str(tiny_repository), "--restart", "on-failure", "--max-restarts", value]
    assert main(args) == 2
    assert "--max-restarts" in capsys.readouterr().err


def _triton_pid(serve) -> int:
    (pid,) = Path(f"/proc/{serve.process.pid}/task/{serve.process.pid}/children").read_text().split()
    return int(pid)


def _hold_port(port: int, timeout_s: float = 1.0) -> socket.socket:
    """Listen on ``port`` as soon as the killed Triton has let go of it."""
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the health probes' TIME_WAIT
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_a_restart_that_fails_backs_off_and_max_restarts_gives_up(tiny_repository, serve_process):
    serve = serve_process(
        "--repository", str(tiny_repository), "--restart", "on-failure", "--max-restarts", "2"
    )
    serve.wait_for("serving — Ctrl-C to stop")
    os.kill(_triton_pid(serve), signal.SIGKILL)
    # Someone takes the HTTP port while Triton is down: restart 1 cannot bind, and is counted.
    squatter = _hold_port(serve.http_port)
    try:
        serve.wait_for(r"restart 1 in 1 s")
        serve.wait_for(r"Triton did not come back \(.*exited before it was ready\): restart 2 in 2 s")
    finally:
        squatter.close()
    serve.wait_for(rf"restart 2: Triton is ready again at {serve.grpc_url}$")
    os.kill(_triton_pid(serve), signal.SIGKILL)
    assert serve.wait() == 6, serve.output
    errors = [line for line in serve.lines if line.startswith("error:")]
    assert len(errors) == 1, serve.output
    assert re.fullmatch(
        r"error: Triton stopped \(killed by SIGKILL, exit code 137\) after \d+ s up; gave up after 2 "
        r"restart\(s\), 2 in a row without staying up 60 s — its log is above; --max-restarts allows more",
        errors[0],
    ), errors[0]
    assert "Traceback" not in serve.output


def test_a_clean_exit_is_not_a_failure_and_is_not_restarted(tiny_repository, serve_process):
    serve = serve_process("--repository", str(tiny_repository), "--restart", "on-failure")
    serve.wait_for("serving — Ctrl-C to stop")
    os.kill(_triton_pid(serve), signal.SIGTERM)  # Triton shuts down cleanly and exits 0
    assert serve.wait() == 6, serve.output
    assert "restart 1" not in serve.output
    assert serve.lines[-1] == (
        "error: Triton stopped unexpectedly (exit code 0) — its log is above; "
        "exit code 0 is not a failure, so it was not restarted"
    )
