"""The performance rule: pure judging, and the interleaved measurement on runners of known cost."""

import time

import pytest

from tritium.builder.perf_gate import LatencyComparison, compare_latency, interleaved_rounds, judge
from tritium.builder.recipe import InputSpec, Objective, PerformanceSettings

SPECS = [InputSpec(name="x", dtype="FP32", shape=["batch", 4])]


def comparison(batch: int, ratio: float, measurements: int = 1) -> LatencyComparison:
    return LatencyComparison(batch, 1.0, ratio, ratio, rounds=7, measurements=measurements)


def test_latency_objective_rejects_only_beyond_the_tolerance():
    within = judge(Objective.LATENCY, 0.5, [comparison(1, 1.49), comparison(8, 0.7)])
    assert within.accepted and within.reason == "meets its objective"
    beyond = judge(Objective.LATENCY, 0.5, [comparison(1, 1.2), comparison(8, 3.4, measurements=2)])
    assert not beyond.accepted
    assert beyond.slowest.batch_size == 8
    assert beyond.reason.startswith("objective latency: 3.40x the FP32 export's latency at batch 8")
    assert "confirmed by a second measurement" in beyond.reason and "allowed up to 1.50x" in beyond.reason


def test_size_objective_needs_a_smaller_file_and_ignores_speed():
    assert judge(Objective.SIZE, 0.5, size_bytes=50, reference_size_bytes=100).accepted
    larger = judge(Objective.SIZE, 0.5, size_bytes=115, reference_size_bytes=100)
    assert not larger.accepted and "not smaller than the FP32 export's 100" in larger.reason
    assert judge(Objective.NONE, 0.0, [comparison(1, 9.0)]).accepted


class Sleeper:
    """A runner whose cost is known: each call sleeps ``ms`` milliseconds."""

    def __init__(self, ms: float) -> None:
        self.label = f"sleep {ms} ms"
        self.ms = ms
        self.calls = 0

    def run(self, inputs):
        self.calls += 1
        time.sleep(self.ms / 1e3)
        return {}


def test_rounds_interleave_and_keep_the_fastest_call_of_each_window():
    settings = PerformanceSettings(rounds=5, seconds=0, round_seconds=0.004)
    fast, slow = Sleeper(0.5), Sleeper(2.0)
    values = interleaved_rounds([fast, slow], {}, settings)
    assert [len(v) for v in values] == [5, 5]
    assert fast.calls > slow.calls > 5  # windows of 4 ms: several calls each, plus one warm-up
    assert all(0.5 <= v < 1.5 for v in values[0]) and all(2.0 <= v < 3.5 for v in values[1])


def test_a_slower_candidate_is_confirmed_and_an_equal_one_is_not():
    settings = PerformanceSettings(tolerance=0.5, rounds=5, seconds=0, round_seconds=0.003)
    reference = Sleeper(1.0)
    (slower,) = compare_latency(Sleeper(3.0), reference, SPECS, [2], settings, {})
    assert slower.ratio == pytest.approx(3.0, rel=0.25) and slower.measurements == 2
    (same,) = compare_latency(Sleeper(1.0), reference, SPECS, [2], settings, {})
    assert same.ratio == pytest.approx(1.0, rel=0.25) and same.measurements == 1
