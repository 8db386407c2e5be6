"""The canary controller loop on a real route store: it stands down on a route a release holds."""

import asyncio
import time

from tritium.gateway import canary
from tritium.gateway.controller import CanaryController
from tritium.gateway.routes import CanaryPolicy, Hold, RouteTable, validated_route
from tritium.gateway.stats import WindowSummary
from tritium.gateway.store import RouteStore

GOOD = WindowSummary(requests=100, errors=0, p99_s=0.01)


def _store(tmp_path, hold: Hold | None) -> RouteStore:
    route = validated_route({
        "targets": [
            {"alias": "stable", "model": "echo", "version": "1", "weight": 100},
            {"alias": "canary", "model": "echo", "version": "2", "weight": 0},
        ]
    })  # fmt: skip
    started = canary.start(route, "stable", "canary", CanaryPolicy(steps=(50, 100), window_s=1), now=0.0)
    started = started.model_copy(update={"hold": hold})
    store = RouteStore(tmp_path / "routes.yaml")

    async def put() -> None:
        await store.change("echo", "put", "test", lambda table: RouteTable(routes={"echo": started}))

    asyncio.run(put())
    return store


async def _good(model: str, variant: str, since: float) -> WindowSummary:
    return GOOD


def test_the_controller_stands_down_on_a_held_route_and_acts_once_the_lease_ends(tmp_path):
    store = _store(tmp_path, Hold(by="release r1", until=time.time() + 60))
    controller = CanaryController(store, _good, interval_s=1)
    asyncio.run(controller.tick(time.time()))
    assert store.table.routes["echo"].canary.percent == 50  # held: not advanced although the window is good

    store = _store(tmp_path, Hold(by="release r1", until=time.time() - 1))  # a release that died: lease over
    controller = CanaryController(store, _good, interval_s=1)
    asyncio.run(controller.tick(time.time()))
    assert store.table.routes["echo"].canary.percent == 100
