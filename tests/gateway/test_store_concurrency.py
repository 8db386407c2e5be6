"""The route store under concurrency: compare-and-set changes, file I/O off the event loop, cancellation."""

import asyncio
import threading
import time

import pytest
import yaml

from tritium.errors import RepositoryError
from tritium.gateway import canary
from tritium.gateway import store as store_module
from tritium.gateway.routes import CanaryPolicy, Route, Target, save_table
from tritium.gateway.store import RouteConflictError, RouteStore

POLICY = CanaryPolicy(steps=(10, 100), window_s=600)


def _route(weight: int) -> Route:
    return Route(
        targets=(
            Target(alias="stable", model="m", version="1", weight=weight),
            Target(alias="canary", model="m", version="2", weight=100 - weight),
        )
    )


class HeldWrites:
    """The real `save_table`, held in its worker thread until the test releases it."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, table, path) -> None:  # type: ignore[no-untyped-def]
        self.started.set()
        if not self.release.wait(timeout=10):
            raise TimeoutError("route file write was never released")
        save_table(table, path)


def file_route(path) -> dict:
    return yaml.safe_load(path.read_text())["routes"]["m"]


async def test_change_built_from_a_stale_route_is_refused_with_409(tmp_path):
    store = RouteStore(tmp_path / "routes.yaml", tmp_path / "audit.jsonl")
    progressing = canary.start(_route(100), "stable", "canary", POLICY, now=0)
    await store.change("m", "canary-start", "admin", lambda t: t.with_route("m", progressing))
    snapshot = store.table.routes["m"]
    stale = snapshot.with_weights({"stable": 50, "canary": 50})  # an admin change built from the snapshot

    rolled = canary.rollback(snapshot, now=1, reason="canary error rate too high")  # the controller wins
    await store.change(
        "m", "canary-rollback", "canary-controller", lambda t: t.with_route("m", rolled), based_on=snapshot
    )
    with pytest.raises(RouteConflictError) as refused:
        await store.change("m", "set-weights", "admin", lambda t: t.with_route("m", stale), based_on=snapshot)

    assert isinstance(refused.value, RepositoryError) and refused.value.http_status == 409
    assert "changed while" in refused.value.one_line() and "retry" in refused.value.one_line()
    assert store.table.routes["m"] == rolled
    assert file_route(tmp_path / "routes.yaml")["canary"]["state"] == "rolled_back"
    assert [r.action for r in store.history] == ["canary-start", "canary-rollback"]
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 2


async def test_change_based_on_the_current_route_applies(tmp_path):
    store = RouteStore(tmp_path / "routes.yaml")
    await store.change("m", "put", "a", lambda t: t.with_route("m", _route(90)), based_on=None)
    current = store.table.routes["m"]
    await store.change("m", "set-weights", "a", lambda t: t.with_route("m", _route(20)), based_on=current)
    assert store.table.routes["m"] == _route(20)
    with pytest.raises(RouteConflictError):  # "create" based on no route, but one exists now
        await store.change("m", "put", "a", lambda t: t.with_route("m", _route(50)), based_on=None)


async def test_route_file_is_written_off_the_event_loop_and_the_table_switches_after(tmp_path, monkeypatch):
    held = HeldWrites()
    monkeypatch.setattr(store_module, "save_table", held)
    store = RouteStore(tmp_path / "routes.yaml", tmp_path / "audit.jsonl")
    before = store.table
    change = asyncio.create_task(store.change("m", "put", "a", lambda t: t.with_route("m", _route(90))))
    assert await asyncio.to_thread(held.started.wait, 5)

    started = time.monotonic()
    for _ in range(10):  # the loop keeps serving other work while the file is being written
        await asyncio.sleep(0.01)
    assert time.monotonic() - started < 1.0
    assert not change.done()
    assert store.table == before and not (tmp_path / "routes.yaml").exists()

    held.release.set()
    await asyncio.wait_for(change, 5)
    assert store.table.routes["m"] == _route(90)
    assert file_route(tmp_path / "routes.yaml")["targets"][0]["weight"] == 90
    assert '"put"' in (tmp_path / "audit.jsonl").read_text()


async def test_cancelled_change_still_leaves_table_and_file_in_step(tmp_path, monkeypatch):
    held = HeldWrites()
    monkeypatch.setattr(store_module, "save_table", held)
    store = RouteStore(tmp_path / "routes.yaml")
    change = asyncio.create_task(store.change("m", "put", "a", lambda t: t.with_route("m", _route(90))))
    assert await asyncio.to_thread(held.started.wait, 5)
    change.cancel()
    await asyncio.sleep(0.05)
    assert not change.done()  # it waits for the write it started
    held.release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(change, 5)
    assert store.table == RouteStore(tmp_path / "routes.yaml").table
    assert store.table.routes["m"] == _route(90)
    # and the store is usable afterwards
    await store.change("m", "put", "a", lambda t: t.with_route("m", _route(30)))
    assert file_route(tmp_path / "routes.yaml")["targets"][0]["weight"] == 30
