"""The search of `tritium tune`, as pure functions of a measuring callback.

Nothing here talks to Triton or reads a clock it was not given: ``evaluate(candidate)`` (I/O, in
tritium.serving.tuning.session) measures one config, ``clock()`` tells the time, and the functions
decide what to measure next and which result wins. Tests drive them with synthetic performance
surfaces and a fake clock.

- :func:`sweep`: one candidate at increasing concurrency, until the p99 limit breaks, throughput stops
  growing, or (latency objective) the throughput asked for is reached.
- :func:`quick_search`: a hill climb from the current config, like Model Analyzer's quick search: measure
  every neighbour (one setting one step away), move to the best if it beats the current one by the
  margin, stop when none does.
- :func:`brute_search`: the whole grid, in order, as far as the budget goes.
- :func:`choose`: the best candidate that meets the constraints; the current config unless another
  beats it by the margin (measurement noise must not change a config).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tritium.serving.tuning.options import Mode, Objective
from tritium.serving.tuning.space import Candidate, SearchSpace, changes


@dataclass(frozen=True)
class Constraints:
    p99_ms: float | None = None
    min_throughput: float | None = None

    def __post_init__(self) -> None:
        for name in ("p99_ms", "min_throughput"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value}")

    def met_by(self, point: Point) -> bool:
        return self.shortfall(point) == 0.0

    def shortfall(self, point: Point) -> float:
        """How far a point is from meeting the constraints, as a fraction (0: it meets them)."""
        if point.errors or not math.isfinite(point.p99_ms):
            return math.inf
        short = 0.0
        if self.p99_ms is not None:
            short += max(0.0, point.p99_ms / self.p99_ms - 1)
        if self.min_throughput is not None:
            short += max(0.0, 1 - point.throughput / self.min_throughput)
        return short

    def describe(self) -> str:
        parts = []
        if self.p99_ms is not None:
            parts.append(f"p99 ≤ {self.p99_ms:g} ms")
        if self.min_throughput is not None:
            parts.append(f"≥ {self.min_throughput:g} req/s")
        return " and ".join(parts) or "no constraint"


@dataclass(frozen=True)
class Point:
    """One measurement: a candidate driven at ``concurrency`` requests in flight."""

    concurrency: int
    throughput: float  # successful requests per second
    p50_ms: float
    p99_ms: float
    errors: int = 0
    stats: Any = None  # what the server said meanwhile (tritium.serving.tuning.measure.TritonStats)


class Status(str, Enum):
    measured = "measured"
    skipped = "skipped"  # Triton refused the config
    rejected = "rejected"  # it loaded but answered differently from onnxruntime


@dataclass(frozen=True)
class Evaluation:
    candidate: Candidate
    status: Status
    points: tuple[Point, ...] = ()
    reason: str = ""  # why skipped/rejected, or why the sweep stopped
    seconds: float = 0.0

    def best(self, objective: Objective, constraints: Constraints) -> Point | None:
        """The point that scores this candidate: the best one meeting the constraints, or None."""
        ok = [p for p in self.points if constraints.met_by(p)] if self.status is Status.measured else []
        if not ok:
            return None
        if objective is Objective.throughput:
            return max(ok, key=lambda p: (p.throughput, -p.p99_ms))
        return min(ok, key=lambda p: (p.p99_ms, -p.throughput))

    def closest(self, constraints: Constraints) -> Point | None:
        """The point nearest to meeting the constraints (for a candidate that met none)."""
        usable = [p for p in self.points if math.isfinite(constraints.shortfall(p))]
        if self.status is not Status.measured or not usable:
            return None
        return min(usable, key=lambda p: (constraints.shortfall(p), -p.throughput))

    def shortfall(self, constraints: Constraints) -> float:
        point = self.closest(constraints)
        return constraints.shortfall(point) if point is not None else math.inf


def better(
    a: Evaluation, b: Evaluation, objective: Objective, constraints: Constraints, margin: float = 0.0
) -> bool:
    """Whether ``a`` beats ``b``: meeting the constraints first, then the objective by ``margin``."""
    pa, pb = a.best(objective, constraints), b.best(objective, constraints)
    if pa is not None and pb is None:
        return True
    if pa is None:
        return pb is None and a.shortfall(constraints) < b.shortfall(constraints)
    if objective is Objective.throughput:
        return pa.throughput > pb.throughput * (1 + margin)
    return pa.p99_ms < pb.p99_ms * (1 - margin)


def _rank_key(objective: Objective, constraints: Constraints) -> Callable[[Evaluation], tuple]:
    def key(ev: Evaluation) -> tuple:
        point = ev.best(objective, constraints)
        if point is None:
            return (1, ev.shortfall(constraints), 0.0)
        score = -point.throughput if objective is Objective.throughput else point.p99_ms
        return (0, 0.0, score)

    return key


def ranked(
    evaluations: Sequence[Evaluation], objective: Objective, constraints: Constraints
) -> list[Evaluation]:
    """Best first: those meeting the constraints by objective, then the others by how close they came."""
    return sorted(evaluations, key=_rank_key(objective, constraints))


def choose(
    evaluations: Sequence[Evaluation],
    start: Evaluation | None,
    objective: Objective,
    constraints: Constraints,
    margin: float,
) -> Evaluation | None:
    """The winner, or None when nothing meets the constraints.

    Every candidate the best does not beat by ``margin`` counts as a tie, and of those the one with the
    fewest changes from the current config (``start``) wins — the current config itself when it is among
    them: on a shared machine a few percent is noise, and a config should not change for noise.
    """
    feasible = ranked(
        [e for e in evaluations if e.best(objective, constraints) is not None], objective, constraints
    )
    if not feasible:
        return None
    best = feasible[0]
    ties = [e for e in feasible if not better(best, e, objective, constraints, margin)]
    if start is None:
        return best
    return min(ties, key=lambda e: len(changes(start.candidate, e.candidate)))  # stable: best first


# --- one candidate at increasing concurrency ---


def concurrency_levels(max_concurrency: int, start: int = 1) -> list[int]:
    """1, 2, 4, ... up to ``max_concurrency`` (which is always the last level)."""
    levels, level = [], max(1, start)
    while level < max_concurrency:
        levels.append(level)
        level *= 2
    levels.append(max_concurrency)
    return levels


def sweep(
    measure: Callable[[int], Point],
    levels: Sequence[int],
    objective: Objective,
    constraints: Constraints,
    min_gain: float = 0.05,
    *,
    confirm: bool = True,
) -> tuple[list[Point], str]:
    """Measure at each level in turn; returns the points and why it stopped.

    Stops when the p99 limit breaks (more requests in flight only queue longer), when throughput grew
    less than ``min_gain`` over the best so far (the server is saturated), on errors, or, for the
    latency objective, once the throughput asked for is reached (more concurrency only adds latency).
    With ``confirm``, a level that breaks the limit is measured once more and only a second break ends
    the sweep: on a shared machine one stall in a few seconds is enough to put a p99 over the limit.
    """
    points: list[Point] = []
    best = 0.0
    for level in levels:
        point = measure(level)
        if confirm and _breaks(point, constraints) and not point.errors:
            points.append(point)
            point = measure(level)
        points.append(point)
        if point.errors:
            return points, f"{point.errors} failed requests at concurrency {level}"
        if _breaks(point, constraints):
            return points, f"p99 over the limit at concurrency {level}"
        if (
            objective is Objective.latency
            and constraints.min_throughput is not None
            and point.throughput >= constraints.min_throughput
        ):
            return points, f"throughput reached at concurrency {level}"
        if best and point.throughput < best * (1 + min_gain):
            return points, f"throughput stopped growing at concurrency {level}"
        best = max(best, point.throughput)
    return points, "highest concurrency reached"


def _breaks(point: Point, constraints: Constraints) -> bool:
    return constraints.p99_ms is not None and point.p99_ms > constraints.p99_ms


# --- the searches ---


class StopReason(str, Enum):
    converged = "converged"  # quick: no neighbour beats the current config
    exhausted = "exhausted"  # every candidate measured (brute: the whole grid)
    budget = "budget"  # the time or candidate budget ran out


@dataclass(frozen=True)
class Budget:
    seconds: float
    max_candidates: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError("the budget must be a positive number of seconds")
        if self.max_candidates is not None and self.max_candidates < 1:
            raise ValueError("max_candidates must be at least 1")


@dataclass
class SearchResult:
    evaluations: list[Evaluation]
    start: Evaluation
    chosen: Evaluation | None
    stop: StopReason
    planned: int | None  # brute: the grid's distinct configs (with the current one); quick: None
    steps: list[Candidate] = field(default_factory=list)  # quick: the configs the climb moved through


class _OutOfBudget(Exception):
    pass


class _Runner:
    """Measures each distinct config once, within the budget; the first (the start) always runs."""

    def __init__(self, evaluate, budget: Budget, clock: Callable[[], float]) -> None:
        self.evaluate, self.budget, self.clock = evaluate, budget, clock
        self.started = clock()
        self.results: dict[Candidate, Evaluation] = {}
        self.order: list[Evaluation] = []
        self.durations: list[float] = []

    def __call__(self, candidate: Candidate) -> Evaluation:
        key = candidate.effective()
        if key in self.results:
            return self.results[key]
        if self.order and not self._room():
            raise _OutOfBudget
        before = self.clock()
        evaluation = self.evaluate(candidate)
        if evaluation.status is Status.measured:
            self.durations.append(self.clock() - before)
        self.results[key] = evaluation
        self.order.append(evaluation)
        return evaluation

    def _room(self) -> bool:
        """Whether one more candidate fits: never start one expected to end past the budget."""
        if self.budget.max_candidates is not None and len(self.order) >= self.budget.max_candidates:
            return False
        expected = sum(self.durations) / len(self.durations) if self.durations else 0.0
        return self.clock() - self.started + expected <= self.budget.seconds


def quick_search(
    space: SearchSpace,
    start: Candidate,
    evaluate: Callable[[Candidate], Evaluation],
    *,
    objective: Objective,
    constraints: Constraints,
    budget: Budget,
    clock: Callable[[], float] = time.monotonic,
    margin: float = 0.03,
) -> SearchResult:
    """Climb from ``start``: measure its neighbours, move to the best one that beats it by ``margin``."""
    space = space.with_point(start)
    run = _Runner(evaluate, budget, clock)
    current = run(start)
    position = start
    steps = [start]
    stop = StopReason.converged
    try:
        while True:
            neighbors = space.neighbors(position)
            measured = [(n, run(n)) for n in neighbors]
            if not measured:
                stop = StopReason.exhausted
                break
            ordered = ranked([ev for _, ev in measured], objective, constraints)
            best = ordered[0]
            if not better(best, current, objective, constraints, margin):
                break
            position = next(n for n, ev in measured if ev is best)
            current = best
            steps.append(position)
    except _OutOfBudget:
        stop = StopReason.budget
    chosen = choose(run.order, run.order[0], objective, constraints, margin)
    return SearchResult(run.order, run.order[0], chosen, stop, planned=None, steps=steps)


def brute_search(
    space: SearchSpace,
    start: Candidate,
    evaluate: Callable[[Candidate], Evaluation],
    *,
    objective: Objective,
    constraints: Constraints,
    budget: Budget,
    clock: Callable[[], float] = time.monotonic,
    margin: float = 0.03,
) -> SearchResult:
    """Measure the current config, then every config of the grid in order, as far as the budget goes."""
    grid = space.grid()
    run = _Runner(evaluate, budget, clock)
    run(start)
    stop = StopReason.exhausted
    try:
        for candidate in grid:
            run(candidate)
    except _OutOfBudget:
        stop = StopReason.budget
    planned = len({c.effective() for c in (start, *grid)})
    chosen = choose(run.order, run.order[0], objective, constraints, margin)
    return SearchResult(run.order, run.order[0], chosen, stop, planned=planned)


def search(mode: Mode, *args, **kwargs) -> SearchResult:
    return (quick_search if mode is Mode.quick else brute_search)(*args, **kwargs)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (p99 ms, throughput) points no other point beats on both, by ascending p99."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front
