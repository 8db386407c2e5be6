"""The gateway application: REST (FastAPI) and gRPC (grpc.aio) front-ends on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

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
from tritium.errors import TritiumError, UnavailableError

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
    address = f"{settings.host}:{settings.grpc_port}"
    why = _unbindable(settings.host, settings.grpc_port) if settings.grpc_port else None
    port = 0
    if why is None:  # checked first: grpc's own bind failure also prints a C-core log line
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as exc:  # "Failed to bind to address ...": taken since the check
            why = str(exc).split(";")[0]
    if port == 0:
        await server.stop(None)
        raise UnavailableError(
            f"cannot serve gRPC on {address}: {why or 'no address was bound'}",
            hint="choose another --grpc-port, or stop what listens there",
        )
    gateway.grpc_port = port
    await server.start()
    log.info("gRPC GRPCInferenceService on %s:%s", settings.host, gateway.grpc_port)
    return server


def _unbindable(host: str, port: int) -> str | None:
    """Why no address of host:port can be bound, as grpc binds it (any resolved address will do)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc.strerror or str(exc)
    reasons = []
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                reasons.append(exc.strerror or str(exc))
            else:
                return None
    return reasons[0] if reasons else "the address does not resolve"


async def open_gateway(settings: GatewaySettings, resources: contextlib.AsyncExitStack) -> Gateway:
    """Start everything the gateway holds; each piece is released by `resources`, also on failure."""
    upstream = Upstream(settings)
    resources.push_async_callback(upstream.close)
    await upstream.start()
    store = RouteStore(settings.route_file, settings.resolved_audit_file)
    gateway = Gateway(settings, store, upstream)
    resources.push_async_callback(gateway.shadows.drain, timeout_s=2.0)
    controller = asyncio.get_running_loop().create_task(
        CanaryController(store, gateway.windows, settings.canary_interval_s).run()
    )
    resources.push_async_callback(_cancel, controller)
    if settings.grpc_port is not None:
        grpc_server = await start_grpc(gateway, settings)
        resources.push_async_callback(grpc_server.stop, grace=1.0)
    return gateway


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


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
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await super().__call__(scope, receive, send)

    gateway_settings: GatewaySettings
    startup_error: TritiumError | None = None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """The ASGI lifespan: a startup failure we know (a taken port, a bad route file) is reported in
        one line and releases what was already started; the server then exits."""
        await receive()  # lifespan.startup
        async with contextlib.AsyncExitStack() as resources:
            try:
                self.state.gateway = await open_gateway(self.gateway_settings, resources)
            except TritiumError as exc:
                self.startup_error = exc
                await resources.aclose()
                await send({"type": "lifespan.startup.failed", "message": exc.one_line()})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


def create_app(settings: GatewaySettings) -> GatewayApp:
    app = GatewayApp(
        title="Tritium gateway",
        docs_url=None,  # served by the admin router, behind the admin token
        redoc_url=None,
        openapi_url=None,
    )
    app.gateway_settings = settings
    install_handlers(app)
    app.router.routes.extend(rest.protocol_routes())
    app.add_route("/metrics", _metrics, methods=["GET"])
    app.include_router(admin.router)
    return app
