"""The search of `tritium tune` on synthetic performance surfaces (pure: no server, a fake clock).

A synthetic config has a service latency L (ms) and a capacity C (req/s); at concurrency c it serves
min(c·1000/L, C) req/s and, by Little's law, its p99 is 1.2·c/throughput. The surfaces below decide L
and C from the settings, so the best config under a p99 limit is known by enumeration.
"""

from __future__ import annotations

import itertools
import math

import pytest

from tritium.serving.tuning.search import (
    Budget,
    Constraints,
    Evaluation,
    Mode,
    Objective,
    Point,
    Status,
    StopReason,
    brute_search,
    choose,
    concurrency_levels,
    pareto_front,
    quick_search,
    search,
    sweep,
)
from tritium.serving.tuning.space import Candidate, Kind, SearchSpace

LEVELS = concurrency_levels(64)
START = Candidate(32, True, 500, "max", 1, Kind.cpu, 2)
SPACE = SearchSpace(
    max_batch_size=(16, 32, 64),
    dynamic_batching=(True, False),
    max_queue_delay_us=(0, 100, 500, 1000, 2000, 4000),
    preferred=("max", "half"),
    instances=(1, 2, 3, 4),
    kind=(Kind.cpu,),
    threads=(1, 2),
)


def point(latency_ms: float, capacity: float, concurrency: int) -> Point:
    throughput = min(concurrency * 1000 / latency_ms, capacity)
    return Point(
        concurrency, throughput, 0.8 * concurrency * 1000 / throughput, 1.2 * concurrency * 1000 / throughput
    )


def unimodal(c: Candidate) -> tuple[float, float]:
    """Capacity peaks at 3 instances, 1000 µs delay, batching on; the delay adds to the latency."""
    c = c.effective()
    capacity = (
        2000 + 3000 * c.dynamic_batching - 600 * abs(c.instances - 3) - 0.5 * abs(c.max_queue_delay_us - 1000)
    )
    capacity += 100 * (c.threads == 1) + 50 * (c.max_batch_size == 64) + 20 * (c.preferred == "max")
    latency = 0.5 + c.max_queue_delay_us / 1000
    return latency, capacity


class Recorder:
    """``evaluate`` over a surface: sweeps each candidate, counts calls, advances a fake clock."""

    def __init__(
        self, surface, *, constraints: Constraints, objective=Objective.throughput, cost_s: float = 10.0
    ):
        self.surface, self.constraints, self.objective, self.cost_s = surface, constraints, objective, cost_s
        self.now = 0.0
        self.calls: list[Candidate] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, candidate: Candidate) -> Evaluation:
        self.calls.append(candidate)
        self.now += self.cost_s
        latency, capacity = self.surface(candidate)
        points, why = sweep(lambda c: point(latency, capacity, c), LEVELS, self.objective, self.constraints)
        return Evaluation(candidate, Status.measured, tuple(points), why)


def brute_truth(surface, constraints: Constraints) -> Candidate:
    """The best feasible config of SPACE by enumeration, measured exactly as the search measures it."""
    best, best_tp = None, -1.0
    for candidate in SPACE.grid():
        latency, capacity = surface(candidate)
        points, _ = sweep(
            lambda c, lat=latency, cap=capacity: point(lat, cap, c), LEVELS, Objective.throughput, constraints
        )
        ok = [p.throughput for p in points if constraints.met_by(p)]
        if ok and max(ok) > best_tp:
            best, best_tp = candidate, max(ok)
    return best


# --- the concurrency sweep ---


def test_sweep_stops_where_the_p99_limit_breaks():
    seen = []

    def measure(c: int) -> Point:
        seen.append(c)
        return point(2.0, 3000, c)  # p99 2.4 ms up to c = 4; saturated at c = 8: 3.2 ms

    constraints = Constraints(p99_ms=3.0)
    points, why = sweep(measure, LEVELS, Objective.throughput, constraints)
    assert seen == [1, 2, 4, 8, 8]  # 8 breaks the limit twice: 16 and up are never driven
    assert "p99 over the limit" in why
    assert not constraints.met_by(points[-1]) and all(constraints.met_by(p) for p in points[:-2])
    ev = Evaluation(START, Status.measured, tuple(points))
    assert ev.best(Objective.throughput, constraints).concurrency == 4


def test_one_stall_does_not_end_the_sweep_a_second_break_does():
    stalls = {2}  # the first measurement at concurrency 2 meets a stall; the repeat does not

    def measure(c: int) -> Point:
        p = point(1.0, 100_000, c)
        if c in stalls:
            stalls.discard(c)
            return Point(c, p.throughput, p.p50_ms, 50.0)
        return p

    constraints = Constraints(p99_ms=5.0)
    points, why = sweep(measure, LEVELS, Objective.throughput, constraints)
    assert [p.concurrency for p in points][:4] == [1, 2, 2, 4] and "p99 over the limit" not in why
    points, why = sweep(measure, LEVELS, Objective.throughput, constraints, confirm=False)
    assert "p99 over the limit" not in why  # (no stall left)
    stalls.add(2)
    points, why = sweep(measure, LEVELS, Objective.throughput, constraints, confirm=False)
    assert [p.concurrency for p in points] == [1, 2] and "p99 over the limit at concurrency 2" in why


def test_sweep_stops_when_throughput_stops_growing():
    points, why = sweep(lambda c: point(1.0, 3000, c), LEVELS, Objective.throughput, Constraints())
    assert [p.concurrency for p in points] == [1, 2, 4, 8]  # 4 → 8: 3000 → 3000, no gain
    assert "stopped growing" in why


def test_sweep_for_latency_stops_once_the_rate_asked_for_is_reached():
    constraints = Constraints(min_throughput=1500)
    points, why = sweep(lambda c: point(1.0, 10_000, c), LEVELS, Objective.latency, constraints)
    assert [p.concurrency for p in points] == [1, 2] and "throughput reached" in why
    best = Evaluation(START, Status.measured, tuple(points)).best(Objective.latency, constraints)
    assert best.concurrency == 2  # the lowest p99 among the points that sustain 1,500 req/s


def test_sweep_stops_on_failed_requests_and_they_never_count():
    def measure(c: int) -> Point:
        ok = point(1.0, 100_000, c)
        return Point(c, ok.throughput, ok.p50_ms, ok.p99_ms, errors=3 if c == 4 else 0)

    constraints = Constraints()
    points, why = sweep(measure, LEVELS, Objective.throughput, constraints)
    assert points[-1].concurrency == 4 and "failed requests" in why
    assert (
        Evaluation(START, Status.measured, tuple(points)).best(Objective.throughput, constraints).concurrency
        == 2
    )


def test_concurrency_levels_double_up_to_the_maximum():
    assert concurrency_levels(64) == [1, 2, 4, 8, 16, 32, 64]
    assert concurrency_levels(24) == [1, 2, 4, 8, 16, 24]
    assert concurrency_levels(1) == [1]


# --- the searches ---


@pytest.mark.parametrize("p99", [3.0, 6.0, 20.0])
def test_quick_search_climbs_to_the_best_config_that_meets_the_limit(p99):
    constraints = Constraints(p99_ms=p99)
    evaluate = Recorder(unimodal, constraints=constraints)
    result = quick_search(
        SPACE, START, evaluate, objective=Objective.throughput, constraints=constraints,
        budget=Budget(1e9), clock=evaluate.clock, margin=0.0,
    )  # fmt: skip
    truth = brute_truth(unimodal, constraints)
    assert result.chosen is not None and result.chosen.candidate.effective() == truth.effective()
    assert result.stop is StopReason.converged
    assert len(evaluate.calls) == len({c.effective() for c in evaluate.calls})  # nothing measured twice
    assert len(evaluate.calls) < len(SPACE.grid()) / 3  # a climb, not a sweep of the grid
    assert result.steps[0] == START and result.steps[-1].effective() == truth.effective()


def test_quick_search_stops_at_a_local_best_after_measuring_its_neighbours():
    def peaked_at_start(c: Candidate) -> tuple[float, float]:
        return 1.0, 5000 - 1000 * (c.effective() != START)

    constraints = Constraints(p99_ms=50)
    evaluate = Recorder(peaked_at_start, constraints=constraints)
    result = quick_search(
        SPACE, START, evaluate, objective=Objective.throughput, constraints=constraints,
        budget=Budget(1e9), clock=evaluate.clock,
    )  # fmt: skip
    neighbours = {n.effective() for n in SPACE.neighbors(START)}
    assert {c.effective() for c in evaluate.calls} == {START} | neighbours
    assert result.stop is StopReason.converged and result.chosen.candidate == START
    assert result.steps == [START]


def test_quick_search_honours_the_time_budget():
    constraints = Constraints(p99_ms=20)
    evaluate = Recorder(unimodal, constraints=constraints, cost_s=10)
    result = quick_search(
        SPACE, START, evaluate, objective=Objective.throughput, constraints=constraints,
        budget=Budget(35), clock=evaluate.clock,
    )  # fmt: skip
    # 10 s each: after 3 (30 s) a fourth would end at 40 s, past 35: it is never started
    assert len(evaluate.calls) == 3 and evaluate.now <= 35
    assert result.stop is StopReason.budget
    assert result.chosen is not None  # the best of what was measured


def test_brute_search_honours_a_candidate_budget_and_sweeps_the_whole_grid_without_one():
    constraints = Constraints(p99_ms=20)
    evaluate = Recorder(unimodal, constraints=constraints)
    result = brute_search(
        SPACE, START, evaluate, objective=Objective.throughput, constraints=constraints,
        budget=Budget(1e9, max_candidates=5), clock=evaluate.clock,
    )  # fmt: skip
    assert len(evaluate.calls) == 5 and result.stop is StopReason.budget and evaluate.calls[0] == START

    evaluate = Recorder(unimodal, constraints=constraints)
    result = search(
        Mode.brute, SPACE, START, evaluate, objective=Objective.throughput, constraints=constraints,
        budget=Budget(1e9), clock=evaluate.clock, margin=0.0,
    )  # fmt: skip
    grid = {c.effective() for c in SPACE.grid()}
    assert {c.effective() for c in evaluate.calls} == grid | {START}
    assert result.stop is StopReason.exhausted and result.planned == len(grid | {START})
    assert result.chosen.candidate.effective() == brute_truth(unimodal, constraints).effective()


def test_no_config_meets_the_limit_and_the_closest_is_ranked_first():
    constraints = Constraints(p99_ms=0.1)  # below every config's latency at concurrency 1
    evaluate = Recorder(unimodal, constraints=constraints)
    result = quick_search(
        SPACE, START, evaluate, objective=Objective.throughput, constraints=constraints,
        budget=Budget(1e9), clock=evaluate.clock,
    )  # fmt: skip
    assert result.chosen is None
    closest = min(result.evaluations, key=lambda e: e.shortfall(constraints))
    assert closest.candidate.effective().max_queue_delay_us == 0  # the shortest latency came closest
    assert math.isfinite(closest.shortfall(constraints))


# --- choosing ---


def _ev(candidate: Candidate, throughput: float, status=Status.measured) -> Evaluation:
    return Evaluation(
        candidate, status, (Point(8, throughput, 1.0, 2.0),) if status is Status.measured else ()
    )


def test_the_current_config_stays_unless_beaten_by_the_margin():
    other = Candidate(32, True, 1000, "max", 2, Kind.cpu, 2)
    start = _ev(START, 1000)
    assert choose([start, _ev(other, 1020)], start, Objective.throughput, Constraints(), 0.03) is start
    winner = _ev(other, 1100)
    assert choose([start, winner], start, Objective.throughput, Constraints(), 0.03) is winner


def test_between_near_ties_the_config_with_fewer_changes_wins():
    one_change = Candidate(32, True, 1000, "max", 1, Kind.cpu, 2)
    three_changes = Candidate(64, True, 2000, "max", 2, Kind.cpu, 2)
    start = _ev(START, 500)
    near, far = _ev(one_change, 1000), _ev(three_changes, 1010)
    assert choose([start, far, near], start, Objective.throughput, Constraints(), 0.03) is near


def test_a_refused_or_wrong_config_never_wins():
    start = _ev(START, 10)
    refused = Evaluation(Candidate(32, True, 0, "max", 4, Kind.gpu, 2), Status.skipped, reason="no GPU")
    wrong = Evaluation(
        Candidate(32, True, 100, "max", 1, Kind.cpu, 2),
        Status.rejected,
        (Point(1, 1e6, 0.1, 0.1),),
        "answers differ",
    )
    assert choose([start, refused, wrong], start, Objective.throughput, Constraints(), 0.0) is start


def test_pareto_front_keeps_the_points_nothing_beats_on_both():
    points = [(1.0, 100.0), (2.0, 300.0), (1.5, 90.0), (3.0, 250.0), (4.0, 400.0), (2.0, 200.0)]
    assert pareto_front(points) == [0, 1, 4]
    assert pareto_front([]) == []
    # brute force agrees on random clouds
    import random

    rng = random.Random(1)
    for _ in range(20):
        cloud = [(rng.uniform(1, 10), rng.uniform(1, 10)) for _ in range(12)]
        expected = {
            i for i, (x, y) in enumerate(cloud)
            if not any((x2 <= x and y2 >= y) and (x2, y2) != (x, y) for x2, y2 in cloud)
        }  # fmt: skip
        assert set(pareto_front(cloud)) == expected


def test_grid_and_neighbours_collapse_settings_that_do_nothing():
    # without dynamic batching, delay and preferred size do nothing: one config, not 6 × 2
    off = [c for c in SPACE.grid() if not c.dynamic_batching]
    assert len(off) == len(SPACE.max_batch_size) * len(SPACE.instances) * len(SPACE.threads)
    assert len(SPACE.grid()) == len(set(SPACE.grid()))
    for candidate in itertools.islice(SPACE.grid(), 40):
        for neighbour in SPACE.neighbors(candidate):
            assert neighbour.effective() != candidate.effective()
