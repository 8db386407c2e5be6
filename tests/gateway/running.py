"""The real gateway app (tritium.gateway.app.create_app) served by uvicorn in a background thread."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time

import httpx
import uvicorn

from tritium.gateway.app import create_app
from tritium.gateway.http_protocol import uvicorn_options
from tritium.gateway.settings import GatewaySettings


class RunningGateway:
    """The gateway app served by uvicorn in a background thread (REST and gRPC on free ports)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.http_port = settings.http_port
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.http_port,
            loop="asyncio",
            **uvicorn_options(settings.max_connections),  # as `tritium gateway` runs it
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.app.state.gateway.grpc_port}"

    @property
    def gateway(self):  # type: ignore[no-untyped-def]
        return self.app.state.gateway

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def wait_until_ready(url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Until a gateway process at `url` answers /v2/health/ready; fails with its output if it exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, process.communicate()[0]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        assert time.monotonic() < deadline, f"the gateway at {url} did not become ready"
        time.sleep(0.2)
