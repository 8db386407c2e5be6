"""Several gateway processes on one route file: changes under a file lock, picked up by the others."""

import asyncio
import multiprocessing

import pytest
import yaml

from tritium.gateway.routes import Route, Target
from tritium.gateway.store import RouteConflictError, RouteStore


def _route(weight: int, model: str = "m") -> Route:
    return Route(
        targets=(
            Target(alias="stable", model=model, version="1", weight=weight),
            Target(alias="canary", model=model, version="2", weight=100 - weight),
        )
    )


async def test_a_change_made_by_another_process_is_picked_up(tmp_path):
    here, there = RouteStore(tmp_path / "routes.yaml"), RouteStore(tmp_path / "routes.yaml")
    await there.change("m", "put", "b", lambda t: t.with_route("m", _route(30)))
    assert "m" not in here.table.routes
    assert await here.refresh() is True
    assert here.table.routes["m"] == _route(30)
    assert await here.refresh() is False  # nothing new


async def test_compare_and_set_sees_what_another_process_wrote(tmp_path):
    here, there = RouteStore(tmp_path / "routes.yaml"), RouteStore(tmp_path / "routes.yaml")
    await here.change("m", "put", "a", lambda t: t.with_route("m", _route(90)))
    await there.refresh()
    seen_here = here.table.routes["m"]
    await there.change("m", "set-weights", "b", lambda t: t.with_route("m", _route(10)), based_on=seen_here)
    with pytest.raises(RouteConflictError):  # here has not refreshed: its view is stale, the file is not
        await here.change(
            "m", "set-weights", "a", lambda t: t.with_route("m", _route(50)), based_on=seen_here
        )
    assert here.table.routes["m"] == _route(90)  # a refused change leaves even a stale view alone
    await here.refresh()
    assert here.table.routes["m"] == _route(10)


async def test_unconditional_changes_keep_the_other_processes_routes(tmp_path):
    here, there = RouteStore(tmp_path / "routes.yaml"), RouteStore(tmp_path / "routes.yaml")
    await here.change("m", "put", "a", lambda t: t.with_route("m", _route(90)))
    await there.change("n", "put", "b", lambda t: t.with_route("n", _route(40, "n")))  # built on a stale view
    routes = yaml.safe_load((tmp_path / "routes.yaml").read_text())["routes"]
    assert set(routes) == {"m", "n"}
    assert there.table.routes["m"] == _route(90)


async def test_an_invalid_edit_on_disk_keeps_the_last_good_routes(tmp_path, caplog):
    store = RouteStore(tmp_path / "routes.yaml")
    await store.change("m", "put", "a", lambda t: t.with_route("m", _route(90)))
    (tmp_path / "routes.yaml").write_text("routes:\n  m:\n    targets: [{alias: x, model: m, weight: 7}]\n")
    assert await store.refresh() is False
    assert store.table.routes["m"] == _route(90)
    assert "cannot be used, still serving the previous routes" in caplog.text
    assert "weights" in caplog.text  # the validation error says what is wrong
    caplog.clear()
    assert await store.refresh() is False and caplog.text == ""  # reported once, not every check
    (tmp_path / "routes.yaml").write_text(
        "routes:\n  m:\n    targets: [{alias: x, model: m, version: '3', weight: 100}]\n"
    )
    assert await store.refresh() is True
    assert store.table.routes["m"].targets[0].version == "3"


@pytest.mark.parametrize("damage", ["delete", "truncate"])
async def test_a_route_file_gone_missing_or_empty_keeps_the_routes(tmp_path, caplog, damage):
    route_file = tmp_path / "routes.yaml"
    store = RouteStore(route_file)
    await store.change("m", "put", "a", lambda t: t.with_route("m", _route(90)))
    await store.change("n", "put", "a", lambda t: t.with_route("n", _route(20, "n")))
    route_file.unlink() if damage == "delete" else route_file.write_text("")
    assert await store.refresh() is False
    assert set(store.table.routes) == {"m", "n"}
    assert ("missing" if damage == "delete" else "empty") in caplog.text
    # the next change is made on the routes being served, and writes them all back
    await store.change("o", "put", "a", lambda t: t.with_route("o", _route(50, "o")))
    assert set(yaml.safe_load(route_file.read_text())["routes"]) == {"m", "n", "o"}
    assert set(RouteStore(route_file).table.routes) == {"m", "n", "o"}


async def test_a_same_size_edit_is_seen(tmp_path):
    """Edits that keep the size (a weight 10 -> 20) are told apart by content, not by size or time."""
    here, there = RouteStore(tmp_path / "routes.yaml"), RouteStore(tmp_path / "routes.yaml")
    await here.change("m", "put", "a", lambda t: t.with_route("m", _route(10)))
    await there.refresh()
    for weight in (20, 30, 40, 60):
        await here.change("m", "put", "a", lambda t, w=weight: t.with_route("m", _route(w)))
        assert await there.refresh() is True
        assert there.table.routes["m"] == _route(weight)


async def test_every_process_sees_every_audit_record(tmp_path):
    audit = tmp_path / "audit.jsonl"
    here, there = RouteStore(tmp_path / "routes.yaml", audit), RouteStore(tmp_path / "routes.yaml", audit)
    await here.change("m", "put", "alice", lambda t: t.with_route("m", _route(90)))
    await there.audit_only("m", "load", "bob")
    assert [(r.who, r.action) for r in await here.recent_audit()] == [("alice", "put"), ("bob", "load")]
    assert [r.who for r in await here.recent_audit(limit=1)] == ["bob"]


def _make_changes(route_file, worker: int, count: int) -> None:
    async def main() -> None:
        store = RouteStore(route_file, route_file.with_name("audit.jsonl"))
        for i in range(count):
            name = f"w{worker}-{i}"
            await store.change(
                name, "put", f"w{worker}", lambda t, name=name: t.with_route(name, _route(50, name))
            )

    asyncio.run(main())


def test_concurrent_processes_lose_no_change(tmp_path):
    route_file = tmp_path / "routes.yaml"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_make_changes, args=(route_file, w, 15)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=60)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    routes = yaml.safe_load(route_file.read_text())["routes"]
    assert len(routes) == 60  # a read-modify-write race would have dropped some
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 60
