import random
from collections import Counter

import pytest

from tritium.gateway.router import (
    DIRECT_VARIANT,
    decide,
    resolve,
    shadow_decision,
    sticky_target,
    weighted_target,
)
from tritium.gateway.routes import Route, RouteTable, Shadow, Target

KEYS = [f"user-{i}" for i in range(20_000)]


def route(*weights: int, shadow: Shadow | None = None) -> Route:
    aliases = ["stable", "canary", "third", "fourth"]
    return Route(
        targets=tuple(
            Target(alias=aliases[i], model="m", version=str(i + 1), weight=w) for i, w in enumerate(weights)
        ),
        shadow=shadow,
    )


def table(r: Route, name: str = "m") -> RouteTable:
    return RouteTable(routes={name: r})


@pytest.mark.parametrize(
    "weights", [(50, 50), (95, 5), (75, 25), (1, 99), (33, 33, 34), (10, 20, 30, 40), (0, 100)]
)
def test_sticky_distribution_follows_weights(weights):
    r = route(*weights)
    counts = Counter(sticky_target("m", r.targets, key).alias for key in KEYS)
    for target in r.targets:
        share = counts[target.alias] / len(KEYS)
        assert share == pytest.approx(target.weight / 100, abs=0.012), (target.alias, share)


@pytest.mark.parametrize("weights", [(50, 50), (95, 5), (10, 20, 30, 40)])
def test_weighted_draw_distribution_follows_weights(weights):
    r = route(*weights)
    rng = random.Random(7)
    counts = Counter(weighted_target(r.targets, rng.random()).alias for _ in range(20_000))
    for target in r.targets:
        assert counts[target.alias] / 20_000 == pytest.approx(target.weight / 100, abs=0.012)


def test_weighted_draw_edges_never_pick_zero_weight():
    r = route(0, 100, 0)
    assert {weighted_target(r.targets, d).alias for d in (0.0, 0.5, 0.999999)} == {"canary"}
    r = route(60, 40)
    assert weighted_target(r.targets, 0.0).alias == "stable"
    assert weighted_target(r.targets, 0.5999).alias == "stable"
    assert weighted_target(r.targets, 0.6).alias == "canary"
    assert weighted_target(r.targets, 0.99999999).alias == "canary"


def test_same_key_always_same_variant_and_replicas_agree():
    t = table(route(70, 30))
    first = [decide(t, "m", "", key, draw=0.0).variant for key in KEYS[:2000]]
    # A rebuilt table (another replica) and different random draws give the same answers.
    again = [decide(table(route(70, 30)), "m", "", key, draw=0.99).variant for key in KEYS[:2000]]
    assert first == again


def test_sticky_hash_is_stable_across_processes():
    # Pinned answers: Python's randomized hash() must not be involved.
    r = route(50, 50)
    assert [sticky_target("m", r.targets, k).alias for k in ("alice", "bob", "carol", "dave")] == [
        sticky_target("m", r.targets, k).alias for k in ("alice", "bob", "carol", "dave")
    ]
    import subprocess
    import sys

    code = (
        "from tritium.gateway.router import sticky_target;from tritium.gateway.routes import Route,Target;"
        "r=Route(targets=(Target(alias='stable',model='m',version='1',weight=50),"
        "Target(alias='canary',model='m',version='2',weight=50)));"
        "print(','.join(sticky_target('m',r.targets,f'k{i}').alias for i in range(50)))"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == ",".join(sticky_target("m", r.targets, f"k{i}").alias for i in range(50))


@pytest.mark.parametrize(
    ("before", "after"), [((95, 5), (75, 25)), ((75, 25), (50, 50)), ((50, 50), (0, 100))]
)
def test_raising_canary_weight_moves_only_the_minimum_and_only_towards_canary(before, after):
    old = {k: sticky_target("m", route(*before).targets, k).alias for k in KEYS}
    new = {k: sticky_target("m", route(*after).targets, k).alias for k in KEYS}
    moved = [k for k in KEYS if old[k] != new[k]]
    assert all(old[k] == "stable" and new[k] == "canary" for k in moved)
    expected = (after[1] - before[1]) / 100
    assert len(moved) / len(KEYS) == pytest.approx(expected, abs=0.012)


def test_adding_a_third_target_takes_keys_only_for_itself():
    old = {k: sticky_target("m", route(50, 50).targets, k).alias for k in KEYS}
    new = {k: sticky_target("m", route(40, 40, 20).targets, k).alias for k in KEYS}
    moved = [k for k in KEYS if old[k] != new[k]]
    assert all(new[k] == "third" for k in moved)
    assert len(moved) / len(KEYS) == pytest.approx(0.20, abs=0.012)


def test_keys_spread_independently_per_route():
    r = route(50, 50)
    a = [sticky_target("a", r.targets, k).alias for k in KEYS[:4000]]
    b = [sticky_target("b", r.targets, k).alias for k in KEYS[:4000]]
    agreement = sum(x == y for x, y in zip(a, b, strict=True)) / 4000
    assert agreement == pytest.approx(0.5, abs=0.05)


def test_explicit_version_goes_to_that_version():
    t = table(route(100, 0))
    d = decide(t, "m", "2", "user-1", draw=0.0)
    assert (d.model, d.version, d.variant, d.chosen_by_route) == ("m", "2", "canary", False)
    d = decide(t, "m", "7", None, draw=0.0)
    assert (d.model, d.version, d.variant) == ("m", "7", "v7")


def test_alias_as_version_goes_to_that_target():
    t = table(route(100, 0))
    d = decide(t, "m", "canary", None, draw=0.0)
    assert (d.version, d.variant) == ("2", "canary")


def test_unrouted_model_passes_through():
    d = decide(RouteTable(), "other", "", "k", draw=0.3)
    assert (d.model, d.version, d.variant, d.chosen_by_route) == ("other", "", DIRECT_VARIANT, False)
    assert decide(RouteTable(), "other", "3", None, draw=0.3).variant == "v3"


def test_public_name_can_differ_from_upstream_name():
    r = Route(targets=(Target(alias="stable", model="digits_onnx", version="4", weight=100),))
    d = decide(RouteTable(routes={"digits": r}), "digits", "", None, draw=0.5)
    assert (d.public_model, d.model, d.version) == ("digits", "digits_onnx", "4")


def test_resolve_uses_primary_target_for_metadata():
    t = table(route(30, 70))
    assert resolve(t, "m", "").variant == "stable"
    t = table(
        Route(
            targets=(
                Target(alias="a", model="m", version="1", weight=30),
                Target(alias="b", model="m", version="2", weight=70),
            )
        )
    )
    assert resolve(t, "m", "").variant == "b"
    assert resolve(t, "m", "1").variant == "a"


def test_shadow_fraction():
    t = table(route(100, 0, shadow=Shadow(model="m", version="9", fraction=0.25)))
    rng = random.Random(3)
    hits = [shadow_decision(t, "m", rng.random()) for _ in range(10_000)]
    taken = [h for h in hits if h is not None]
    assert len(taken) / 10_000 == pytest.approx(0.25, abs=0.02)
    assert {(h.model, h.version, h.variant) for h in taken} == {("m", "9", "shadow")}
    assert shadow_decision(table(route(100, 0)), "m", 0.0) is None
