"""Canary windows shared by gateway processes: every process's outcomes count, once."""

import pytest

from tritium.gateway.shared_outcomes import SharedOutcomes
from tritium.gateway.stats import LATENCY_RESOLUTION, OutcomeWindows


def _publish(shared: SharedOutcomes, windows: OutcomeWindows, now: float) -> None:
    shared.publish(shared.snapshot(windows), now)
    shared.published_upto = now


def test_windows_of_two_processes_add_up(tmp_path):
    db = tmp_path / "outcomes.sqlite"
    first, second = SharedOutcomes(db, "p1"), SharedOutcomes(db, "p2")
    w1, w2 = OutcomeWindows(), OutcomeWindows()
    for i in range(100):
        w1.record("m", "canary", at=1000.0 + i / 100, ok=i % 10 != 0, latency_s=0.002)
        w2.record("m", "canary", at=1000.5, ok=True, latency_s=0.050 if i == 0 else 0.001)
    _publish(first, w1, 1001.0)
    _publish(second, w2, 1001.0)
    summary = first.summary("m", "canary", since=1000.0)
    assert (summary.requests, summary.errors) == (200, 10)
    # 190 successes: the 2 largest are 2 ms and 50 ms, so the nearest-rank p99 (rank 189) is 2 ms
    assert summary.p99_s == pytest.approx(0.002, rel=LATENCY_RESOLUTION)
    assert second.summary("m", "stable", since=0).requests == 0


def test_a_second_still_filling_is_replaced_not_added(tmp_path):
    shared, windows = SharedOutcomes(tmp_path / "o.sqlite", "p1"), OutcomeWindows()
    windows.record("m", "v", at=10.2, ok=True, latency_s=0.001)
    _publish(shared, windows, 10.3)
    windows.record("m", "v", at=10.6, ok=False, latency_s=0.001)
    windows.record("m", "v", at=11.1, ok=True, latency_s=0.001)
    _publish(shared, windows, 11.2)
    _publish(shared, windows, 11.3)  # nothing new: publishing again changes nothing
    summary = shared.summary("m", "v", since=10.0)
    assert (summary.requests, summary.errors) == (3, 1)
    assert shared.summary("m", "v", since=11.0).requests == 1


def test_retention_and_forget(tmp_path):
    shared, windows = SharedOutcomes(tmp_path / "o.sqlite", "p1", retention_s=60), OutcomeWindows()
    windows.record("m", "v", at=100.0, ok=True, latency_s=0.001)
    windows.record("n", "v", at=100.0, ok=True, latency_s=0.001)
    _publish(shared, windows, 100.5)
    shared.forget("n")
    assert shared.summary("m", "v", since=0).requests == 1
    assert shared.summary("n", "v", since=0).requests == 0
    shared.publish([], 130.0)  # pruned at most once a minute
    assert shared.summary("m", "v", since=0).requests == 1
    shared.publish([], 200.0)
    assert shared.summary("m", "v", since=0).requests == 0


def test_seconds_a_failed_publication_missed_go_out_with_the_next(tmp_path):
    shared, windows = SharedOutcomes(tmp_path / "o.sqlite", "p1"), OutcomeWindows()
    windows.record("m", "v", at=10.2, ok=True, latency_s=0.001)
    lost = shared.snapshot(windows)  # say its publish failed: published_upto stays where it was
    assert len(lost) == 1
    windows.record("m", "v", at=14.5, ok=True, latency_s=0.001)
    _publish(shared, windows, 14.6)
    assert shared.summary("m", "v", since=0).requests == 2
