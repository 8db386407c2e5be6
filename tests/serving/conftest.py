"""Fixtures for the serving tests: a Docker Engine API on a Unix socket, and `tritium serve` as a process.

- ``docker_engine``: a :class:`tests.serving.docker_engine.DockerEngine` that knows the default Triton
  image, with ``DOCKER_HOST`` pointing at it for this test (and for the processes it starts).
- ``serve_process``: ``(*args) -> ServeProcess`` runs ``tritium serve ARGS`` on three free ports and
  collects its output line by line; every process is killed at the end of the test if still alive.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.serving.docker_engine import DockerEngine
from tritium.serving.docker_runtime import DEFAULT_IMAGE
from tritium.serving.ports import free_port


@pytest.fixture
def docker_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[DockerEngine]:
    with DockerEngine(images={DEFAULT_IMAGE}) as engine:
        monkeypatch.setenv("DOCKER_HOST", engine.url)
        yield engine


class ServeProcess:
    """`tritium serve` in a child process, on known ports, its output read as it comes."""

    def __init__(self, args: list[str]) -> None:
        self.http_port, self.grpc_port, self.metrics_port = (free_port() for _ in range(3))
        command = [
            sys.executable, "-c", "import sys; from tritium.cli import main; sys.exit(main())", "serve",
            *args,
            "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port),
        ]  # fmt: skip
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout_s: float = 120.0, start: int = 0) -> re.Match[str]:
        """The first output line from index ``start`` on that matches ``pattern``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                if match := re.search(pattern, line):
                    return match
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n{self.output}")

    def wait(self, timeout_s: float = 60.0) -> int:
        code = self.process.wait(timeout_s)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        """SIGTERM first, so a test that failed half way still stops its Triton; then SIGKILL."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def serve_process() -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def start(*args: str) -> ServeProcess:
        process = ServeProcess(list(args))
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
