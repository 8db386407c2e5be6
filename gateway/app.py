"""The gateway application: REST (FastAPI) and gRPC (grpc.aio) front-ends on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tritium.errors import TritiumError, UnavailableError
from tritium.gateway import admin, grpc_service, metrics, rest
from tritium.gateway.controller import CanaryController
from tritium.gateway.core import Gateway
from tritium.gateway.error_mapping import install_handlers
from tritium.gateway.leadership import FileLeadership
from tritium.gateway.settings import GatewaySettings, startup_failure_file, worker_settings
from tritium.gateway.shared_outcomes import SharedOutcomes, process_name
from tritium.gateway.store import RouteStore
from tritium.gateway.upstream import Upstream

log = logging.getLogger("tritium.gateway")


async def _metrics(_: Request) -> Response:
    body, media_type = metrics.exposition()
    return Response(body, media_type=media_type)


async def start_grpc(gateway: Gateway, settings: GatewaySettings) -> grpc.aio.Server:
    shared_port = settings.workers > 1
    server = grpc.aio.server(
        interceptors=[grpc_service.ErrorInterceptor()],
        options=[
            ("grpc.max_receive_message_length", settings.max_payload_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1 if shared_port else 0),
        ],
    )
    grpc_service.add_to_server(server, gateway)
    address = f"{settings.host}:{settings.grpc_port}"
    # Checked first (grpc's own bind failure also prints a C-core log line); with workers sharing the
    # port, `tritium gateway` checked it before starting them.
    why = unbindable(settings.host, settings.grpc_port) if settings.grpc_port and not shared_port else None
    port = 0
    if why is None:
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


def unbindable(host: str, port: int) -> str | None:
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
    leadership = None
    if settings.workers > 1:
        leadership = await _share_with_other_workers(gateway, settings, resources)
    _in_background(resources, store.watch(settings.route_refresh_s))
    _in_background(resources, gateway.refresh_known_models())
    controller = CanaryController(store, gateway.window_summary, settings.canary_interval_s, leadership)
    _in_background(resources, controller.run())
    if settings.grpc_port is not None:
        grpc_server = await start_grpc(gateway, settings)
        resources.push_async_callback(grpc_server.stop, grace=1.0)
    if settings.admin_port is not None:
        await start_admin(gateway, settings, resources)
    return gateway


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server inside the gateway's event loop: the process's own server handles signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def start_admin(
    gateway: Gateway, settings: GatewaySettings, resources: contextlib.AsyncExitStack
) -> None:
    """The admin API on its own listener (`admin_port`), e.g. for a NetworkPolicy that exposes only
    the inference port. Workers share it like the gRPC port (SO_REUSEPORT)."""
    assert settings.admin_port is not None
    shared_port = settings.workers > 1
    why = unbindable(settings.host, settings.admin_port) if settings.admin_port and not shared_port else None
    sock = None
    if why is None:
        try:
            sock = _listening_socket(settings.host, settings.admin_port, reuse_port=shared_port)
        except OSError as exc:
            why = exc.strerror or str(exc)
    if sock is None:
        raise UnavailableError(
            f"cannot serve the admin API on {settings.host}:{settings.admin_port}: {why}",
            hint="choose another --admin-port, or stop what listens there",
        )
    gateway.admin_port = sock.getsockname()[1]
    config = uvicorn.Config(create_admin_app(gateway), lifespan="off", access_log=False, log_level="warning")
    server = _EmbeddedServer(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))

    async def stop() -> None:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()

    resources.push_async_callback(stop)
    while not server.started:  # bound: the socket is listening already, startup is in-process
        if task.done():
            await task
            raise UnavailableError(f"the admin API on port {gateway.admin_port} did not start")
        await asyncio.sleep(0.01)
    log.info("admin API on %s:%s", settings.host, gateway.admin_port)


def _listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _share_with_other_workers(
    gateway: Gateway, settings: GatewaySettings, resources: contextlib.AsyncExitStack
) -> FileLeadership:
    """One worker of several: publish canary windows to the others, and elect a canary controller."""
    if settings.state_dir is None:
        raise UnavailableError("several workers need a state directory", hint="set state_dir")
    shared = SharedOutcomes(settings.state_dir / "outcomes.sqlite", process_name())
    gateway.shared_windows = shared
    resources.push_async_callback(_publish_windows, gateway, shared)  # the last second too, on exit
    _in_background(resources, _publish_windows_every(gateway, shared, interval_s=1.0))
    leadership = FileLeadership(settings.state_dir / "canary.lock", "canary controller")
    resources.callback(leadership.release)
    metrics.forget_dead_processes()
    resources.callback(metrics.forget_this_process)
    return leadership


async def _publish_windows(gateway: Gateway, shared: SharedOutcomes) -> None:
    now = time.time()
    rows = shared.snapshot(gateway.windows)
    after = shared.published_upto - 1
    served = gateway.recent.since(after)
    feedback = gateway.feedback.seconds_since(after)
    agreement = gateway.agreement.seconds_since(after)
    try:
        await asyncio.to_thread(shared.publish, rows, now, served, feedback, agreement)
    except (sqlite3.Error, OSError) as exc:  # the same seconds go out again next time
        log.error("could not publish canary windows to %s: %s", shared.path, exc)
    else:
        shared.published_upto = now


async def _publish_windows_every(gateway: Gateway, shared: SharedOutcomes, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await _publish_windows(gateway, shared)
        except Exception:
            log.exception("publishing canary windows failed; will retry")


def _in_background(resources: contextlib.AsyncExitStack, work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    resources.push_async_callback(_cancel, task)


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
                _report_worker_failure(self.gateway_settings, exc.exit_code, exc.one_line())
                await send({"type": "lifespan.startup.failed", "message": exc.one_line()})
                return
            except Exception as exc:
                _report_worker_failure(self.gateway_settings, 1, f"{type(exc).__name__}: {exc}")
                raise
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


def _report_worker_failure(settings: GatewaySettings, exit_code: int, reason: str) -> None:
    """Tell `tritium gateway --workers N` why a worker could not start (the first one to fail)."""
    if settings.workers == 1 or settings.state_dir is None:
        return
    with contextlib.suppress(FileExistsError), open(startup_failure_file(settings.state_dir), "x") as f:
        f.write(f"{exit_code}\n{reason}\n")


def worker_app() -> GatewayApp:
    """The app of one process of `tritium gateway --workers N` (uvicorn imports and calls this)."""
    settings, log_level = worker_settings()
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return create_app(settings)
    except Exception as exc:
        _report_worker_failure(settings, 1, f"{type(exc).__name__}: {exc}")
        raise


def create_app(settings: GatewaySettings) -> GatewayApp:
    """The inference app; it serves the admin API too unless that has a port of its own."""
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
    if settings.admin_port is None:
        app.include_router(admin.router)
    return app


def create_admin_app(gateway: Gateway) -> FastAPI:
    """The admin API alone, on `admin_port`, sharing the inference app's gateway state."""
    app = FastAPI(title="Tritium gateway admin API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gateway
    install_handlers(app)
    app.include_router(admin.router)
    return app
