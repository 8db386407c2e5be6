import random
from collections import Counter

import pytest

from tritium.gateway.stats import LATENCY_RESOLUTION, OutcomeWindows, binned_p99, latency_bin, p99


def test_p99_nearest_rank():
    assert p99([]) is None
    assert p99([0.5]) == 0.5
    assert p99([float(i) for i in range(1, 101)]) == 99.0
    assert p99([float(i) for i in range(1, 1001)]) == 990.0


@pytest.mark.parametrize("seed", range(5))
def test_binned_p99_is_within_the_resolution_of_the_exact_one(seed):
    rng = random.Random(seed)
    latencies = [rng.lognormvariate(-6, 1.2) for _ in range(rng.randint(1, 20_000))]
    exact, binned = p99(latencies), binned_p99(Counter(latency_bin(latency) for latency in latencies))
    assert exact <= binned <= exact * (1 + LATENCY_RESOLUTION) * 1.0001


def test_summary_counts_only_recent_and_excludes_errors_from_latency():
    w = OutcomeWindows()
    w.record("m", "canary", at=1.0, ok=False, latency_s=9.0)
    for i in range(10):
        w.record("m", "canary", at=10.0 + i, ok=i != 3, latency_s=0.001 * (i + 1))
    s = w.summary("m", "canary", since=10.0)
    assert (s.requests, s.errors) == (10, 1)
    assert s.error_rate == pytest.approx(0.1)
    assert s.p99_s == pytest.approx(0.010, rel=LATENCY_RESOLUTION)
    assert w.summary("m", "stable", since=0).requests == 0
    assert w.summary("m", "canary", since=0).requests == 11


def test_window_keeps_only_the_retention():
    w = OutcomeWindows(retention_s=100)
    for i in range(1000):
        w.record("m", "v", at=float(i), ok=True, latency_s=0.001)
    assert w.summary("m", "v", since=0).requests == 101  # seconds 899..999
    w.forget("m")
    assert w.summary("m", "v", since=0).requests == 0


def test_seconds_since_are_copies():
    w = OutcomeWindows()
    w.record("m", "v", at=5.5, ok=True, latency_s=0.002)
    [(model, variant, second, counts)] = w.seconds_since(5.0)
    assert (model, variant, second, counts.requests) == ("m", "v", 5, 1)
    w.record("m", "v", at=5.7, ok=False, latency_s=0.002)
    assert counts.requests == 1 and w.seconds_since(6.0) == []
