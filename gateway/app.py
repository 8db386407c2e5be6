"""The gateway application: REST (FastAPI) and gRPC (grpc.aio) front-ends on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway import admin, grpc_service, rest
from gateway.controller import CanaryController
from gateway.core import Gateway
from gateway.error_mapping import install_handlers
from gateway.settings import GatewaySettings
from gateway.store import RouteStore
from gateway.upstream import Upstream

log = logging.getLogger("tritium.gateway")


async def _metrics(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def start_grpc(gateway: Gateway, settings: GatewaySettings) -> grpc.aio.Server:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_payload_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ]
    )
    grpc_service.add_to_server(server, gateway)
    gateway.grpc_port = server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
    await server.start()
    log.info("gRPC GRPCInferenceService on %s:%s", settings.host, gateway.grpc_port)
    return server


class GatewayApp(FastAPI):
    """FastAPI for everything, except that POST .../infer goes straight to its handler.

    The infer route is the hot path: FastAPI's middleware stack and Starlette's router cost more CPU
    per request than the forwarding itself (docs/benchmarks.md). The same handler is also
    registered as a normal route, so both paths behave the same.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = rest.match_infer(scope["path"])
            if target is not None:
                await rest.infer(self.state.gateway, scope, receive, send, *target)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: GatewaySettings) -> GatewayApp:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstream = Upstream(settings)
        await upstream.start()
        store = RouteStore(settings.route_file, settings.resolved_audit_file)
        gateway = Gateway(settings, store, upstream)
        app.state.gateway = gateway
        controller = asyncio.get_running_loop().create_task(
            CanaryController(store, gateway.windows, settings.canary_interval_s).run()
        )
        grpc_server = await start_grpc(gateway, settings) if settings.grpc_port is not None else None
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(grace=1.0)
            controller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await controller
            await gateway.shadows.drain(timeout_s=2.0)
            await upstream.close()

    app = GatewayApp(
        title="Tritium gateway",
        lifespan=lifespan,
        docs_url="/admin/docs",
        redoc_url=None,
        openapi_url="/admin/openapi.json",
    )
    install_handlers(app)
    app.router.routes.extend(rest.protocol_routes())
    app.add_route("/metrics", _metrics, methods=["GET"])
    app.include_router(admin.router)
    return app
