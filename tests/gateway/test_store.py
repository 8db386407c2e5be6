import pytest
import yaml

from tritium.errors import RepositoryError, UserInputError
from tritium.gateway.routes import Route, Target
from tritium.gateway.store import RouteStore


def _route(weight: int) -> Route:
    return Route(
        targets=(
            Target(alias="stable", model="m", version="1", weight=weight),
            Target(alias="canary", model="m", version="2", weight=100 - weight),
        )
    )


async def test_change_persists_and_audits(tmp_path):
    store = RouteStore(tmp_path / "routes.yaml", tmp_path / "audit.jsonl")
    await store.change("m", "put", "alice@127.0.0.1", lambda t: t.with_route("m", _route(90)), detail="first")
    assert yaml.safe_load((tmp_path / "routes.yaml").read_text())["routes"]["m"]["targets"][0]["weight"] == 90
    assert RouteStore(tmp_path / "routes.yaml").table == store.table  # what a restart reads back
    record = store.history[-1]
    assert (record.who, record.action, record.model, record.detail) == (
        "alice@127.0.0.1",
        "put",
        "m",
        "first",
    )
    assert '"alice@127.0.0.1"' in (tmp_path / "audit.jsonl").read_text()


async def test_failed_change_leaves_everything_as_it_was(tmp_path):
    store = RouteStore(tmp_path / "routes.yaml")
    await store.change("m", "put", "a", lambda t: t.with_route("m", _route(90)))
    before_file, before_table = (tmp_path / "routes.yaml").read_text(), store.table

    def invalid(table):
        return table.with_route("m", table.routes["m"].with_weights({"stable": 10}))

    with pytest.raises(UserInputError):
        await store.change("m", "set-weights", "a", invalid)
    assert store.table == before_table and (tmp_path / "routes.yaml").read_text() == before_file


async def test_unwritable_route_file_changes_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = RouteStore(blocker / "routes.yaml")  # parent is a file: cannot be written
    with pytest.raises(RepositoryError, match="could not write route file"):
        await store.change("m", "put", "a", lambda t: t.with_route("m", _route(50)))
    assert store.table.routes == {}
