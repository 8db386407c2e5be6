import pytest

from tritium.errors import RepositoryError, UserInputError
from tritium.gateway import canary
from tritium.gateway.routes import CanaryPolicy, CanaryState, Route, Target
from tritium.gateway.stats import WindowSummary

POLICY = CanaryPolicy(
    steps=(5, 25, 50, 100),
    window_s=10,
    min_requests=20,
    max_error_rate_increase=0.02,
    max_p99_ratio=1.5,
    p99_slack_ms=2,
)
HEALTHY = WindowSummary(requests=100, errors=0, p99_s=0.010)
STABLE = WindowSummary(requests=1000, errors=1, p99_s=0.010)


def base() -> Route:
    return Route(
        targets=(
            Target(alias="stable", model="m", version="1", weight=100),
            Target(alias="canary", model="m", version="2", weight=0),
        )
    )


def weights(route: Route) -> dict[str, int]:
    return {t.alias: t.weight for t in route.targets}


def test_start_sets_first_step():
    r = canary.start(base(), "stable", "canary", POLICY, now=100)
    assert weights(r) == {"stable": 95, "canary": 5}
    assert r.canary.state is CanaryState.PROGRESSING and r.canary.percent == 5


def test_full_progression_to_promotion():
    r = canary.start(base(), "stable", "canary", POLICY, now=0)
    seen = [r.canary.percent]
    now = 0.0
    for _ in range(10):
        now += 10
        t = canary.evaluate(r, HEALTHY, STABLE, now)
        assert t is not None and t.action in {"advance", "promote"}
        r = t.route
        seen.append(r.canary.percent)
        if r.canary.state is CanaryState.PROMOTED:
            break
    assert seen == [5, 25, 50, 100]
    assert weights(r) == {"stable": 0, "canary": 100}
    assert canary.evaluate(r, HEALTHY, STABLE, now + 100) is None


def test_holds_until_window_and_min_requests():
    r = canary.start(base(), "stable", "canary", POLICY, now=0)
    assert canary.evaluate(r, HEALTHY, STABLE, now=9.9) is None
    assert canary.evaluate(r, WindowSummary(19, 0, 0.001), STABLE, now=50) is None
    assert canary.evaluate(r, HEALTHY, STABLE, now=10).action == "advance"


@pytest.mark.parametrize(
    ("window", "breach"),
    [
        (WindowSummary(100, 4, 0.010), canary.Breach.ERROR_RATE),  # 4 % > 0.1 % + 2 %
        (WindowSummary(100, 0, 0.0171), canary.Breach.LATENCY),  # 17.1 ms > 10 * 1.5 + 2
    ],
)
def test_breach_rolls_back_to_zero_immediately_with_reason(window, breach):
    r = canary.start(base(), "stable", "canary", POLICY, now=0)
    t = canary.evaluate(r, window, STABLE, now=1)
    assert t.action == "rollback" and t.breach is breach
    assert weights(t.route) == {"stable": 100, "canary": 0}
    assert t.route.canary.state is CanaryState.ROLLED_BACK
    assert t.route.canary.reason and "canary" in t.route.canary.reason


def test_just_within_thresholds_does_not_breach():
    r = canary.start(base(), "stable", "canary", POLICY, now=0)
    ok = WindowSummary(1000, 21, 0.0169)  # 2.1 % <= 0.1 % + 2 %; 16.9 ms <= 17 ms
    assert canary.evaluate(r, ok, STABLE, now=1) is None


def test_breach_needs_min_requests():
    r = canary.start(base(), "stable", "canary", POLICY, now=0)
    assert canary.evaluate(r, WindowSummary(5, 5, None), STABLE, now=1) is None


def test_manual_promote_and_rollback():
    r = canary.start(base(), "stable", "canary", POLICY, now=0)
    assert weights(canary.promote(r, now=1)) == {"stable": 0, "canary": 100}
    rb = canary.rollback(r, now=1, reason="operator said so")
    assert weights(rb) == {"stable": 100, "canary": 0} and rb.canary.reason == "operator said so"


def test_cannot_start_twice_or_without_targets():
    r = canary.start(base(), "stable", "canary", POLICY, now=0)
    with pytest.raises(UserInputError, match="already progressing"):
        canary.start(r, "stable", "canary", POLICY, now=1)
    with pytest.raises(UserInputError, match="'blue'"):
        canary.start(base(), "stable", "blue", POLICY, now=0)
    with pytest.raises(RepositoryError, match="no canary in progress"):
        canary.promote(base(), now=0)


def test_restart_after_rollback():
    r = canary.rollback(canary.start(base(), "stable", "canary", POLICY, now=0), now=1, reason="x")
    r = canary.start(r, "stable", "canary", POLICY, now=2)
    assert r.canary.state is CanaryState.PROGRESSING and r.canary.reason == ""
