"""Connections to Triton, one pool of each per process, opened in the app's lifespan.

- REST passthrough: a pool of keep-alive HTTP/1.1 connections (`tritium.gateway.http_pool`, httptools
  parser), so request bodies, JSON or binary-tensor, are forwarded as raw bytes with only the URL
  rewritten, at a fraction of a general HTTP client's CPU per request.
- gRPC passthrough: a grpc.aio channel with Triton's generated GRPCInferenceService stub, so
  protobuf requests are forwarded with only model_name/model_version rewritten.
- Control, health and metadata for the gateway's own use: tritonclient's gRPC aio client (gRPC
  because model load/unload over HTTP can stall HTTP inference, server#8958).
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import grpc
from tritonclient.grpc import aio as grpc_aio
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tritium.errors import UpstreamTimeoutError
from tritium.gateway.http_pool import HttpPool, RawResponse
from tritium.gateway.settings import GatewaySettings
from tritium.triton_errors import TritonCall, from_client, unreachable

# Not content-encoding: the gateway decodes compressed bodies itself (gateway/body.py).
FORWARDED_REQUEST_HEADERS = ("content-type", "inference-header-content-length", "accept-encoding")


def model_path(model: str, version: str) -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    return f"{path}/versions/{quote(version, safe='')}" if version else path


class Upstream:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.http_url = settings.triton_http_url
        self.grpc_url = settings.triton_grpc_url
        self._pool: HttpPool | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: service_pb2_grpc.GRPCInferenceServiceStub | None = None
        self._control: grpc_aio.InferenceServerClient | None = None

    async def start(self) -> None:
        # Triton waits for open HTTP connections when it shuts down (up to --exit-timeout-secs), so
        # idle pooled connections are closed quickly; busy ones stay open.
        self._pool = HttpPool(self.http_url, size=self.settings.upstream_connections, idle_timeout_s=2.0)
        self._pool.start()
        reconnect_quickly = [
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        limit = self.settings.max_payload_bytes + 1024 * 1024
        self._channel = grpc.aio.insecure_channel(
            self.grpc_url,
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", -1),
                *reconnect_quickly,
            ],
        )
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._control = grpc_aio.InferenceServerClient(self.grpc_url, channel_args=reconnect_quickly)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._channel is not None:
            await self._channel.close()
        if self._control is not None:
            await self._control.close()

    @property
    def stub(self) -> service_pb2_grpc.GRPCInferenceServiceStub:
        assert self._stub is not None, "Upstream.start() was not called"
        return self._stub

    async def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> RawResponse:
        """One raw HTTP exchange with Triton; a stale pooled connection is retried once."""
        assert self._pool is not None, "Upstream.start() was not called"
        try:
            async with asyncio.timeout(self.settings.upstream_timeout_s):
                return await self._pool.request(method, path, body, headers)
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"Triton did not answer {method} {path} within {self.settings.upstream_timeout_s} s",
                hint="raise upstream_timeout_s or check the model's latency",
            ) from None
        except OSError as exc:  # refused, reset, closed: Triton is down or restarting
            raise unreachable(self.http_url, str(exc) or type(exc).__name__) from None

    async def server_ready(self) -> tuple[bool, str]:
        assert self._control is not None
        try:
            ready = await self._control.is_server_ready(client_timeout=2.0)
        except InferenceServerException as exc:
            return False, f"Triton at {self.grpc_url} is not reachable ({exc.message()})"
        return ready, "ready" if ready else f"Triton at {self.grpc_url} is up but not ready"

    async def model_ready(self, model: str, version: str) -> bool:
        return await self._control_call(
            lambda c: c.is_model_ready(model, version, client_timeout=5.0), what=f"model {model!r}"
        )

    async def load_model(self, model: str) -> None:
        await self._control_call(
            lambda c: c.load_model(model, client_timeout=300.0), kind=TritonCall.LOAD, what=f"model {model!r}"
        )

    async def unload_model(self, model: str) -> None:
        await self._control_call(
            lambda c: c.unload_model(model, client_timeout=60.0), what=f"model {model!r}"
        )

    async def repository_index(self) -> list[dict]:
        index = await self._control_call(
            lambda c: c.get_model_repository_index(as_json=True, client_timeout=10.0)
        )
        return list(index.get("models", []))

    async def _control_call(
        self, call, *, kind: TritonCall = TritonCall.CONTROL, what: str = "the repository"
    ):  # type: ignore[no-untyped-def]
        assert self._control is not None
        try:
            return await call(self._control)
        except InferenceServerException as exc:
            raise from_client(exc, call=kind, what=what, url=self.grpc_url) from None
