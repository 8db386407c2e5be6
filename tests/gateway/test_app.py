"""The app's lifespan: what it starts is released again, also when starting fails half-way."""

import asyncio
import socket

import yaml

from tests.gateway.conftest import free_port
from tritium.gateway.app import create_app
from tritium.gateway.settings import load_settings

ROUTES = {
    "routes": {"echo": {"targets": [{"alias": "stable", "model": "echo", "version": "1", "weight": 100}]}}
}


async def run_lifespan(app, *, shutdown: bool) -> list[dict]:
    """Drive the ASGI lifespan protocol as a server does; return what the app sent."""
    inbox: asyncio.Queue = asyncio.Queue()
    sent: list[dict] = []
    await inbox.put({"type": "lifespan.startup"})
    if shutdown:
        await inbox.put({"type": "lifespan.shutdown"})

    async def send(message: dict) -> None:
        sent.append(message)

    await asyncio.wait_for(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send), 30)
    return sent


def settings_for(triton, tmp_path, **overrides):
    values = {
        "http_port": free_port(),
        "grpc_port": 0,
        "triton_http_url": triton.http_url,
        "triton_grpc_url": triton.grpc_url,
        "route_file": tmp_path / "routes.yaml",
        **overrides,
    }
    return load_settings(**values)


def other_tasks() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_taken_grpc_port_fails_startup_in_one_line_and_releases_everything(triton, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    before = other_tasks()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = create_app(settings_for(triton, tmp_path, grpc_port=port))
        sent = await run_lifespan(app, shutdown=False)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    message = sent[0]["message"]
    assert f"cannot serve gRPC on 127.0.0.1:{port}" in message and "\n" not in message
    assert app.startup_error is not None and app.startup_error.exit_code == 6
    await asyncio.sleep(0)
    assert other_tasks() == before  # the canary controller and the pool's tasks are gone


async def test_bad_route_file_fails_startup_in_one_line(triton, tmp_path):
    (tmp_path / "routes.yaml").write_text(
        "routes: {echo: {targets: [{alias: stable, model: echo, weight: 30}]}}"
    )
    before = other_tasks()
    app = create_app(settings_for(triton, tmp_path))
    sent = await run_lifespan(app, shutdown=False)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "add up to 100" in sent[0]["message"] and "\n" not in sent[0]["message"]
    await asyncio.sleep(0)
    assert other_tasks() == before


async def test_clean_startup_and_shutdown(triton, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    before = other_tasks()
    app = create_app(settings_for(triton, tmp_path))
    sent = await run_lifespan(app, shutdown=True)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert app.state.gateway.grpc_port > 0
    await asyncio.sleep(0)
    assert other_tasks() == before
