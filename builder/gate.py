"""The accuracy gate: accept a variant only if every metric stays within its budget."""

from __future__ import annotations

from dataclasses import dataclass

from tritium.builder.metrics import Score


@dataclass(frozen=True)
class Check:
    metric: str
    baseline: float
    value: float
    budget: float
    higher_is_better: bool

    @property
    def drop(self) -> float:
        """How much worse than the baseline (positive = worse), in the metric's units."""
        delta = self.baseline - self.value
        return delta if self.higher_is_better else -delta

    @property
    def passed(self) -> bool:
        return self.drop <= self.budget + 1e-12

    def describe(self) -> str:
        verdict = "ok" if self.passed else "OVER BUDGET"
        return (
            f"{self.metric} {self.value:.4f} vs baseline {self.baseline:.4f}: drop {self.drop:+.4f} "
            f"(budget {self.budget:.4f}) {verdict}"
        )


@dataclass(frozen=True)
class GateDecision:
    checks: tuple[Check, ...]

    @property
    def accepted(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reason(self) -> str:
        failed = [c.describe() for c in self.checks if not c.passed]
        return "; ".join(failed) if failed else "within budget"


def gate(pairs: list[tuple[Score, Score, float]]) -> GateDecision:
    """``pairs`` holds (baseline score, variant score, budget) for each metric."""
    checks = []
    for baseline, value, budget in pairs:
        if baseline.metric != value.metric:
            raise ValueError(f"cannot compare {baseline.metric} with {value.metric}")
        checks.append(
            Check(baseline.metric.value, baseline.value, value.value, budget, baseline.higher_is_better)
        )
    return GateDecision(tuple(checks))
