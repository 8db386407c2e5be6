"""The real gateway app (tritium.gateway.app.create_app) served by uvicorn in a background thread."""

from __future__ import annotations

import threading
import time

import uvicorn

from tritium.gateway.app import create_app
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
