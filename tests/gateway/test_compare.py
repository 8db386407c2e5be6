"""A/B statistics (gateway/compare.py) against scipy and simulation, and through the real gateway."""

from __future__ import annotations

from collections import Counter

import httpx
import numpy as np
import pytest
import yaml
from scipy import stats

from tests.gateway.conftest import ADMIN_TOKEN
from tritium.cli import main
from tritium.gateway import compare
from tritium.gateway.stats import SecondCounts, bin_upper_bound, latency_bin

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def _arm(
    rng: np.random.Generator, requests: int, error_rate: float, latency_ms: float
) -> tuple[SecondCounts, list]:
    """An arm's counts as the gateway keeps them, and the exact latencies behind its bins."""
    errors = int(rng.binomial(requests, error_rate))
    latencies = rng.lognormal(np.log(latency_ms / 1000), 0.3, requests - errors)
    bins = Counter(latency_bin(float(x)) for x in latencies)
    return SecondCounts(requests, errors, bins), latencies


@pytest.mark.parametrize(("errors", "requests"), [(0, 10), (3, 40), (50, 1000), (999, 1000)])
def test_wilson_interval_matches_scipy(errors: int, requests: int) -> None:
    ours = compare.wilson_interval(errors, requests)
    theirs = stats.binomtest(errors, requests).proportion_ci(method="wilson")
    assert ours.low == pytest.approx(theirs.low, abs=1e-12) and ours.high == pytest.approx(
        theirs.high, abs=1e-12
    )


def test_two_proportion_test_matches_scipy() -> None:
    table = np.array([[30, 970], [55, 945]])
    _, p_chi2, _, _ = stats.chi2_contingency(table, correction=False)  # the same test, squared
    assert compare.two_proportion_p_value(30, 1000, 55, 1000) == pytest.approx(p_chi2, rel=1e-9)


def test_mann_whitney_on_bins_matches_scipy_on_the_binned_values() -> None:
    rng = np.random.default_rng(3)
    a, _ = _arm(rng, 400, 0.0, 10.0)
    b, _ = _arm(rng, 300, 0.0, 10.6)
    expanded = [[bin_upper_bound(i) for i, n in arm.latency_bins.items() for _ in range(n)] for arm in (a, b)]
    expected = stats.mannwhitneyu(
        *expanded, alternative="two-sided", method="asymptotic", use_continuity=True
    )
    assert compare.mann_whitney_p_value(a.latency_bins, b.latency_bins) == pytest.approx(
        expected.pvalue, rel=1e-9
    )


def test_requests_needed_gives_the_promised_power() -> None:
    """Simulated: at the computed size, the test detects 5 % vs 8 % errors about 80 % of the time."""
    needed = compare.requests_needed(0.05, 0.08)
    assert needed is not None and 900 < needed < 1200
    rng = np.random.default_rng(7)
    trials = 2000
    a, b = rng.binomial(needed, 0.05, trials), rng.binomial(needed, 0.08, trials)
    rejected = sum(
        compare.two_proportion_p_value(int(x), needed, int(y), needed) < 0.05
        for x, y in zip(a, b, strict=True)
    )
    assert 0.76 < rejected / trials < 0.84
    assert compare.requests_needed(0.05, 0.05) is None


def test_a_known_difference_is_found_and_no_difference_is_not() -> None:
    rng = np.random.default_rng(11)
    stable, stable_latencies = _arm(rng, 4000, 0.01, 10.0)
    worse, _ = _arm(rng, 4000, 0.03, 13.0)
    same, _ = _arm(rng, 4000, 0.01, 10.0)
    result = compare.compare("m", 0.0, {"stable": stable, "canary": worse, "twin": same}, reference="stable")
    by_arm = {d.arm: d for d in result.differences}
    assert by_arm["canary"].error_rate_p_value < 1e-4 and by_arm["canary"].latency_p_value < 1e-10
    assert by_arm["canary"].requests_still_needed == 0  # enough data already
    assert by_arm["twin"].error_rate_p_value > 0.05 and by_arm["twin"].latency_p_value > 0.05
    (arm,) = [a for a in result.arms if a.arm == "stable"]
    exact_p99 = float(np.percentile(stable_latencies, 99, method="inverted_cdf"))
    assert arm.p99_s == pytest.approx(exact_p99, rel=0.011)  # bins are 1 % wide
    assert arm.p99_interval.low <= arm.p99_s <= arm.p99_interval.high
    assert arm.p50_interval.high - arm.p50_interval.low < 0.05 * arm.p50_s  # 4,000 requests: tight
    assert arm.error_rate_interval.low < arm.error_rate < arm.error_rate_interval.high


def test_an_empty_arm_has_no_statistics_rather_than_wrong_ones() -> None:
    result = compare.compare(
        "m", 0.0, {"stable": SecondCounts(), "canary": SecondCounts()}, reference="stable"
    )
    assert result.arms[0].p50_s is None and result.arms[0].error_rate_interval == compare.Interval(0.0, 1.0)
    (diff,) = result.differences
    assert (
        diff.error_rate_p_value is None
        and diff.latency_p_value is None
        and diff.requests_still_needed is None
    )


# --- through the gateway --------------------------------------------------------------------------

ROUTES = {
    "routes": {
        "echo": {
            "targets": [
                {"alias": "stable", "model": "echo", "version": "1", "weight": 50},
                {"alias": "slow", "model": "echo", "version": "4", "weight": 50},  # version 4: +100 ms
            ]
        }
    }
}
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


def test_compare_through_the_admin_api_and_the_cli(gateway_factory, tmp_path, capsys) -> None:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory()
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        for _ in range(40):
            assert http.post("/v2/models/echo/infer", json=BODY).status_code == 200
        data = http.get("/admin/routes/echo/compare?minutes=5", headers=AUTH).json()
        assert http.get("/admin/routes/echo/compare?reference=nope", headers=AUTH).status_code == 404
        assert http.get("/admin/routes/echo/compare?minutes=0", headers=AUTH).status_code == 400
    arms = {a["arm"]: a for a in data["arms"]}
    assert set(arms) == {"stable", "slow"} and arms["stable"]["requests"] + arms["slow"]["requests"] == 40
    assert arms["slow"]["p50_s"] > arms["stable"]["p50_s"] + 0.08
    (diff,) = data["differences"]
    assert diff["arm"] == "slow" and diff["reference"] == "stable" and diff["latency_p_value"] < 0.001
    code = main(["routes", "compare", "echo", "--url", gw.url, "--token", ADMIN_TOKEN, "--minutes", "5"])
    out = capsys.readouterr().out
    assert code == 0 and "slow vs stable" in out and "p99 ms" in out
