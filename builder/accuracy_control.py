"""Accuracy control: keep the fewest quantizable nodes in FP32 that bring a quantized model within budget.

The search is pure: it is given the fully quantized model's verdict, the candidates ranked by a
cheap proxy (:mod:`tritium.builder.sensitivity`) and a ``trial`` function that quantizes with a
list of nodes excluded and judges the result on the search set. It then

1. confirms the ``confirm`` best-ranked candidates on the metric, one exclusion each (the proxy
   only nominates; a node that helps nothing is dropped here);
2. excludes them greedily, largest measured gain first, then the others by proxy rank (a node that
   did not help alone may help once another is excluded), judging the model after each
   exclusion, until every metric is within its budget, ``max_excluded`` nodes are excluded, the
   candidates run out or the deadline passes.

Every trial is recorded, so the lineage can list each excluded node with the metrics after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from tritium.builder.gate import GateDecision
from tritium.builder.sensitivity import Candidate


class Outcome(str, Enum):
    NOT_NEEDED = "not-needed"  # the quantized model met every budget on the search set as it was
    WITHIN_BUDGET = "within-budget"
    MAX_EXCLUDED = "max-excluded-nodes"
    TIME_LIMIT = "time-limit"
    NO_CANDIDATES = "no-candidates"  # every candidate is excluded, still over budget


@dataclass(frozen=True)
class Trial:
    excluded: tuple[str, ...]
    path: Path
    decision: GateDecision

    @property
    def within_budget(self) -> bool:
        return self.decision.accepted

    @property
    def shortfall(self) -> float:
        return shortfall(self.decision)

    def metrics(self) -> dict[str, float]:
        return {check.metric: check.value for check in self.decision.checks}


def shortfall(decision: GateDecision) -> float:
    """How far over budget the worst metric is, in units of its budget (≤ 0: every metric within)."""
    return max(((c.drop - c.budget) / max(c.budget, 1e-6) for c in decision.checks), default=0.0)


@dataclass(frozen=True)
class Exclusion:
    candidate: Candidate
    trial: Trial  # the model with this node and every earlier one excluded


@dataclass(frozen=True)
class SearchResult:
    initial: Trial
    confirmed: tuple[tuple[Candidate, Trial], ...]  # single-exclusion trials of the top candidates
    exclusions: tuple[Exclusion, ...]
    outcome: Outcome

    @property
    def final(self) -> Trial:
        return self.exclusions[-1].trial if self.exclusions else self.initial


def greedy_exclusion(
    initial: Trial,
    candidates: Sequence[Candidate],
    trial: Callable[[tuple[str, ...]], Trial],
    *,
    max_excluded: int,
    confirm: int,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    discard: Callable[[Trial], None] = lambda _: None,
) -> SearchResult:
    """Exclude candidates until ``initial``'s model is within budget (see the module's docstring)."""
    if initial.within_budget:
        return SearchResult(initial, (), (), Outcome.NOT_NEEDED)

    def late() -> bool:
        return deadline is not None and clock() >= deadline

    confirmed: list[tuple[Candidate, Trial]] = []
    for candidate in candidates[:confirm]:
        if late():
            return SearchResult(initial, tuple(confirmed), (), Outcome.TIME_LIMIT)
        single = trial((candidate.node,))
        confirmed.append((candidate, single))
        if single.within_budget:  # one node is the fewest there can be
            for _, other in confirmed[:-1]:
                discard(other)
            return SearchResult(
                initial, tuple(confirmed), (Exclusion(candidate, single),), Outcome.WITHIN_BUDGET
            )
    helpful = sorted(
        (pair for pair in confirmed if pair[1].shortfall < initial.shortfall), key=lambda p: p[1].shortfall
    )
    # then the rest in proxy order: exclusions interact, and a node may only help once another is
    # excluded (an outlier layer hides the damage done to the next one)
    first = [c for c, _ in helpful]
    order = first + [c for c in candidates if c not in first]
    singles = {c.node: t for c, t in confirmed}

    exclusions: list[Exclusion] = []
    outcome = Outcome.NO_CANDIDATES
    for candidate in order:
        if len(exclusions) >= max_excluded:
            outcome = Outcome.MAX_EXCLUDED
            break
        if late():
            outcome = Outcome.TIME_LIMIT
            break
        excluded = (*(e.candidate.node for e in exclusions), candidate.node)
        step = singles.get(candidate.node) if len(excluded) == 1 else None
        step = step if step is not None else trial(excluded)
        if exclusions and exclusions[-1].trial is not singles.get(exclusions[-1].candidate.node):
            discard(exclusions[-1].trial)
        exclusions.append(Exclusion(candidate, step))
        if step.within_budget:
            outcome = Outcome.WITHIN_BUDGET
            break
    else:
        if len(exclusions) >= max_excluded:
            outcome = Outcome.MAX_EXCLUDED
    kept = exclusions[-1].trial if exclusions else None
    for _, single in confirmed:
        if single is not kept:
            discard(single)
    return SearchResult(initial, tuple(confirmed), tuple(exclusions), outcome)
