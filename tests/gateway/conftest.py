"""Real servers for the gateway tests: a real tritonserver (Python backend) and the gateway itself.

The Triton repository holds one model, `echo`, whose versions behave differently so tests can tell
who answered: version N returns x * N; version 3 always fails; version 4 takes 100 ms longer; any
version sleeps `delay_ms` when the request carries that parameter.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.running import RunningGateway
from tritium.gateway.settings import load_settings
from tritium.serving import cleanup

ECHO_MODEL = """
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FAILING_VERSIONS = {3}
EXTRA_SECONDS = {4: 0.1}


class TritonPythonModel:
    def initialize(self, args):
        self.version = int(args["model_version"])

    def execute(self, requests):
        responses = []
        for request in requests:
            delay_ms = json.loads(request.parameters() or "{}").get("delay_ms", 0)
            time.sleep(delay_ms / 1000 + EXTRA_SECONDS.get(self.version, 0))
            if self.version in FAILING_VERSIONS:
                error = pb_utils.TritonError(f"echo version {self.version} is broken on purpose")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            y = (x * self.version).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", y)]))
        return responses
"""

ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 8
version_policy { all {} }
input [{ name: "x" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [4] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""
ECHO_VERSIONS = (1, 2, 3, 4)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _triton_dir() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


def write_echo_repository(root: Path) -> Path:
    model = root / "repository" / "echo"
    for version in ECHO_VERSIONS:
        (model / str(version)).mkdir(parents=True, exist_ok=True)
        (model / str(version) / "model.py").write_text(ECHO_MODEL)
    (model / "config.pbtxt").write_text(ECHO_CONFIG)
    backends = root / "backends" / "python"
    backends.mkdir(parents=True, exist_ok=True)
    source = _triton_dir()
    for item in (source / "backends" / "python").iterdir():
        if item.is_file():
            (backends / item.name).symlink_to(item)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    (backends / "triton_python_backend_stub").symlink_to(
        source / "python_backend_stubs" / version / "triton_python_backend_stub"
    )
    return root / "repository"


class TritonServer:
    """A real tritonserver on free loopback ports; restartable on the same ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repository = write_echo_repository(root)
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "triton.log"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout_s: float = 90.0) -> None:
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = f"{sysconfig.get_config_var('LIBDIR')}:{env.get('LD_LIBRARY_PATH', '')}"
        command = [
            str(_triton_dir() / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.root / 'backends'}",
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            "--model-control-mode=explicit",
            "--load-model=echo",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--metrics-address=127.0.0.1",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{self.http_url}/v2/models/echo/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"tritonserver not ready in {timeout_s} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            regions = cleanup.shm_regions_of(cleanup.group_pids(process.pid))
            cleanup.kill_group(process.pid)
            process.wait(timeout=10)
            cleanup.remove_regions(regions)


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    if shutil.which("tritonserver", path=str(_triton_dir() / "bin")) is None:
        pytest.fail("the tritonserver binary of nvidia-pytriton is missing: pip install nvidia-pytriton")
    server = TritonServer(tmp_path_factory.mktemp("triton"))
    server.start()
    yield server
    server.stop()


ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def gateway_factory(triton: TritonServer, tmp_path: Path) -> Iterator[Callable[..., RunningGateway]]:
    started: list[RunningGateway] = []

    def start(triton_server: TritonServer | None = None, **overrides: object) -> RunningGateway:
        upstream = triton_server or triton
        values: dict[str, object] = {
            "http_port": free_port(),
            "grpc_port": 0,
            "triton_http_url": upstream.http_url,
            "triton_grpc_url": upstream.grpc_url,
            "route_file": tmp_path / "routes.yaml",
            "admin_token": ADMIN_TOKEN,
            "canary_interval_s": 0.1,
        }
        values.update(overrides)
        running = RunningGateway(load_settings(**values))
        running.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def own_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A Triton of the test's own, which it may stop, restart or unload models on."""
    server = TritonServer(tmp_path_factory.mktemp("own-triton"))
    server.start()
    yield server
    server.stop()
