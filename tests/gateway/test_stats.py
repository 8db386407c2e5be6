import pytest

from gateway.stats import OutcomeWindows, p99


def test_p99_nearest_rank():
    assert p99([]) is None
    assert p99([0.5]) == 0.5
    assert p99([float(i) for i in range(1, 101)]) == 99.0
    assert p99([float(i) for i in range(1, 1001)]) == 990.0


def test_summary_counts_only_recent_and_excludes_errors_from_latency():
    w = OutcomeWindows()
    w.record("m", "canary", at=1.0, ok=False, latency_s=9.0)
    for i in range(10):
        w.record("m", "canary", at=10.0 + i, ok=i != 3, latency_s=0.001 * (i + 1))
    s = w.summary("m", "canary", since=10.0)
    assert (s.requests, s.errors) == (10, 1)
    assert s.error_rate == pytest.approx(0.1)
    assert s.p99_s == pytest.approx(0.010)
    assert w.summary("m", "stable", since=0).requests == 0


def test_window_is_bounded():
    w = OutcomeWindows(max_per_variant=100)
    for i in range(1000):
        w.record("m", "v", at=float(i), ok=True, latency_s=0.0)
    assert w.summary("m", "v", since=0).requests == 100
    w.forget("m")
    assert w.summary("m", "v", since=0).requests == 0
