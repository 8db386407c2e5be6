import pytest
import yaml

from tritium.errors import UserInputError
from tritium.gateway.routes import (
    CanaryPolicy,
    Route,
    Target,
    load_table,
    save_table,
    validated_route,
    validated_table,
)


def _route(**extra):
    return {
        "targets": [
            {"alias": "stable", "model": "m", "version": "1", "weight": 90},
            {"alias": "canary", "model": "m", "version": "2", "weight": 10},
        ],
        **extra,
    }


def test_round_trip_through_yaml(tmp_path):
    table = validated_table(
        {
            "routes": {
                "m": _route(shadow={"model": "m", "version": "3", "fraction": 0.1}, sticky_header="x-user-id")
            }
        }
    )
    path = tmp_path / "routes.yaml"
    save_table(table, path)
    assert load_table(path) == table
    assert yaml.safe_load(path.read_text())["routes"]["m"]["targets"][1]["weight"] == 10


def test_missing_file_is_an_empty_table(tmp_path):
    assert load_table(tmp_path / "none.yaml").routes == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"targets": [{"alias": "a", "model": "m", "weight": 60}]}, "add up to 100, they add up to 60"),
        ({"targets": []}, "targets"),
        (
            {
                "targets": [
                    {"alias": "a", "model": "m", "weight": 50},
                    {"alias": "a", "model": "m", "weight": 50},
                ]
            },
            "repeated: a",
        ),
        ({"targets": [{"alias": "A b", "model": "m", "weight": 100}]}, "targets.0.alias"),
        ({"targets": [{"alias": "a", "model": "m", "version": "x1", "weight": 100}]}, "targets.0.version"),
        ({"targets": [{"alias": "a", "model": "m", "weight": 100}], "colour": "red"}, "colour"),
        (_route(canary={"stable": "stable", "canary": "nope"}), "canary canary alias 'nope' is not a target"),
        (_route(canary={"policy": {"steps": [10, 5, 100]}}), "strictly increase"),
        (_route(canary={"policy": {"steps": [10, 50]}}), "ending at 100"),
        (_route(shadow={"alias": "canary", "model": "m"}), "also a target alias"),
    ],
)
def test_invalid_routes_say_what_is_wrong(data, message):
    with pytest.raises(UserInputError, match=message) as info:
        validated_route(data)
    assert "\n" not in str(info.value)


def test_bad_yaml_is_one_clear_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("routes: {m: [unclosed")
    with pytest.raises(UserInputError, match="not valid YAML") as info:
        load_table(path)
    assert "\n" not in str(info.value)
    path.write_text("routes: {m: {targets: [{alias: a, model: m, weight: 7}]}}")
    with pytest.raises(UserInputError, match=r"route file .*r.yaml.*add up to 100"):
        load_table(path)


def test_with_weights_validates():
    r = validated_route(_route())
    assert [t.weight for t in r.with_weights({"stable": 50, "canary": 50}).targets] == [50, 50]
    with pytest.raises(UserInputError, match="unknown target alias"):
        r.with_weights({"blue": 100})
    with pytest.raises(UserInputError, match="add up to 100"):
        r.with_weights({"stable": 50})


def test_primary_prefers_stable():
    r = Route(targets=(Target(alias="x", model="m", weight=80), Target(alias="stable", model="m", weight=20)))
    assert r.primary.alias == "stable"


def test_canary_policy_defaults_are_valid():
    assert CanaryPolicy().steps == (5, 25, 50, 100)


def test_example_route_file_is_valid():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "deploy" / "routes.example.yaml"
    table = load_table(example)
    assert set(table.routes) == {"digits", "minilm"}
    assert table.routes["digits"].shadow.fraction == 0.2
