"""A/B statistics a data scientist can trust: each arm of a route against a reference arm.

Pure functions of the outcome windows (gateway/stats.py: per-second request and error counts and
latencies in 1 %-wide bins). Per arm: requests, error rate with a 95 % Wilson interval, p50 and p99
with bootstrap intervals (resampled from the binned latencies). Against the reference arm: a
two-proportion z-test for the error rates, a Mann-Whitney rank test for the latencies (normal
approximation with the tie correction, as scipy's asymptotic method), and the number of requests per
arm still needed to tell the observed error-rate difference apart at α = 0.05 with 80 % power.
Feedback (gateway/feedback.py) is compared the same way: accuracy with a Wilson interval and a
two-proportion test, mean reward with a normal interval and a z-test with unequal variances.
tests/gateway/test_compare.py checks the tests against scipy.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from tritium.gateway.feedback import FeedbackCounts
from tritium.gateway.stats import SecondCounts, bin_upper_bound

ALPHA = 0.05
POWER = 0.8
BOOTSTRAP_SAMPLES = 1000
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class FeedbackStats:
    """What clients said of an arm's answers: right or wrong, and rewards."""

    judged: int
    accuracy: float | None
    accuracy_interval: Interval | None
    rewarded: int
    mean_reward: float | None
    mean_reward_interval: Interval | None


@dataclass(frozen=True)
class ArmStats:
    arm: str
    requests: int
    errors: int
    error_rate: float
    error_rate_interval: Interval
    p50_s: float | None
    p50_interval: Interval | None
    p99_s: float | None
    p99_interval: Interval | None
    feedback: FeedbackStats


@dataclass(frozen=True)
class Difference:
    """One arm against the reference arm."""

    arm: str
    reference: str
    error_rate_difference: float
    error_rate_p_value: float | None  # None: no requests, or no errors on either side
    latency_p_value: float | None  # None: no successful requests on one side
    requests_needed_per_arm: int | None  # None: no difference to detect
    requests_still_needed: int | None
    accuracy_p_value: float | None = None  # feedback `correct`: two-proportion test
    reward_p_value: float | None = None  # feedback `reward`: z-test of the means (unequal variances)


@dataclass(frozen=True)
class Comparison:
    model: str
    since: float
    arms: tuple[ArmStats, ...]
    differences: tuple[Difference, ...]


def wilson_interval(errors: int, requests: int, confidence: float = 1 - ALPHA) -> Interval:
    if requests == 0:
        return Interval(0.0, 1.0)
    z = _NORMAL.inv_cdf(0.5 + confidence / 2)
    p = errors / requests
    centre = (p + z * z / (2 * requests)) / (1 + z * z / requests)
    half = z * math.sqrt(p * (1 - p) / requests + z * z / (4 * requests * requests)) / (1 + z * z / requests)
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_p_value(errors_a: int, n_a: int, errors_b: int, n_b: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test."""
    if n_a == 0 or n_b == 0:
        return None
    pooled = (errors_a + errors_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance == 0:
        return None
    z = (errors_a / n_a - errors_b / n_b) / math.sqrt(variance)
    return 2 * (1 - _NORMAL.cdf(abs(z)))


def mann_whitney_p_value(bins_a: Counter[int], bins_b: Counter[int]) -> float | None:
    """Two-sided p-value of the Mann-Whitney U test on binned values (asymptotic, tie-corrected,
    with continuity correction: scipy.stats.mannwhitneyu's `method="asymptotic"`)."""
    n_a, n_b = sum(bins_a.values()), sum(bins_b.values())
    if n_a == 0 or n_b == 0:
        return None
    ranks_sum_a, rank, tie_term = 0.0, 0, 0.0
    for index in sorted(set(bins_a) | set(bins_b)):
        a, b = bins_a.get(index, 0), bins_b.get(index, 0)
        tied = a + b
        mid_rank = rank + (tied + 1) / 2  # every value of a tie group gets the group's mean rank
        ranks_sum_a += a * mid_rank
        rank += tied
        tie_term += tied**3 - tied
    n = n_a + n_b
    u_a = ranks_sum_a - n_a * (n_a + 1) / 2
    mean = n_a * n_b / 2
    variance = n_a * n_b / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (abs(u_a - mean) - 0.5) / math.sqrt(variance)
    return min(1.0, 2 * (1 - _NORMAL.cdf(max(z, 0.0))))


def requests_needed(p_a: float, p_b: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Requests per arm for a two-sided two-proportion test to detect p_a vs p_b."""
    if p_a == p_b:
        return None
    z_alpha, z_beta = _NORMAL.inv_cdf(1 - alpha / 2), _NORMAL.inv_cdf(power)
    pooled = (p_a + p_b) / 2
    numerator = z_alpha * math.sqrt(2 * pooled * (1 - pooled)) + z_beta * math.sqrt(
        p_a * (1 - p_a) + p_b * (1 - p_b)
    )
    return math.ceil(numerator**2 / (p_a - p_b) ** 2)


def reward_p_value(a: FeedbackCounts, b: FeedbackCounts) -> float | None:
    """Two-sided p-value of a z-test on two mean rewards with unequal variances (Welch's statistic;
    the normal approximation is what the hundreds of rewards an A/B needs make accurate)."""
    if a.rewarded < 2 or b.rewarded < 2:
        return None
    variance = _variance(a) / a.rewarded + _variance(b) / b.rewarded
    if variance <= 0:
        return None
    z = (a.reward_sum / a.rewarded - b.reward_sum / b.rewarded) / math.sqrt(variance)
    return 2 * (1 - _NORMAL.cdf(abs(z)))


def _variance(counts: FeedbackCounts) -> float:
    """The sample variance (n - 1) of an arm's rewards, from their sum and sum of squares."""
    n, total = counts.rewarded, counts.reward_sum
    return max(0.0, (counts.reward_squares - total * total / n) / (n - 1))


def feedback_stats(counts: FeedbackCounts) -> FeedbackStats:
    mean = counts.reward_sum / counts.rewarded if counts.rewarded else None
    reward_interval = None
    if counts.rewarded >= 2 and mean is not None:
        half = _NORMAL.inv_cdf(1 - ALPHA / 2) * math.sqrt(_variance(counts) / counts.rewarded)
        reward_interval = Interval(mean - half, mean + half)
    return FeedbackStats(
        judged=counts.judged,
        accuracy=counts.correct / counts.judged if counts.judged else None,
        accuracy_interval=wilson_interval(counts.correct, counts.judged) if counts.judged else None,
        rewarded=counts.rewarded,
        mean_reward=mean,
        mean_reward_interval=reward_interval,
    )


def _percentile(index_sorted: np.ndarray, cumulative: np.ndarray, fraction: float) -> float:
    total = cumulative[-1]
    rank = max(1, math.ceil(fraction * total))
    return bin_upper_bound(int(index_sorted[np.searchsorted(cumulative, rank)]))


def latency_percentiles(bins: Counter[int], seed: int = 0) -> tuple[float | None, ...]:
    """p50, its interval, p99, its interval: nearest-rank from the bins, intervals by bootstrap."""
    total = sum(bins.values())
    if total == 0:
        return None, None, None, None
    indices = np.array(sorted(bins))
    counts = np.array([bins[i] for i in indices])
    cumulative = np.cumsum(counts)
    p50, p99 = _percentile(indices, cumulative, 0.5), _percentile(indices, cumulative, 0.99)
    draws = np.random.default_rng(seed).multinomial(total, counts / total, size=BOOTSTRAP_SAMPLES)
    resampled = np.cumsum(draws, axis=1)
    estimates = {}
    for fraction in (0.5, 0.99):
        rank = max(1, math.ceil(fraction * total))
        positions = (resampled >= rank).argmax(axis=1)
        values = np.array([bin_upper_bound(int(i)) for i in indices])[positions]
        low, high = np.percentile(values, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
        estimates[fraction] = Interval(float(low), float(high))
    return p50, estimates[0.5], p99, estimates[0.99]


def arm_stats(arm: str, counts: SecondCounts, feedback: FeedbackCounts, seed: int = 0) -> ArmStats:
    p50, p50_interval, p99, p99_interval = latency_percentiles(counts.latency_bins, seed)
    return ArmStats(
        arm=arm,
        requests=counts.requests,
        errors=counts.errors,
        error_rate=counts.errors / counts.requests if counts.requests else 0.0,
        error_rate_interval=wilson_interval(counts.errors, counts.requests),
        p50_s=p50,  # type: ignore[arg-type]
        p50_interval=p50_interval,  # type: ignore[arg-type]
        p99_s=p99,  # type: ignore[arg-type]
        p99_interval=p99_interval,  # type: ignore[arg-type]
        feedback=feedback_stats(feedback),
    )


def difference(
    arm: SecondCounts,
    reference: SecondCounts,
    names: tuple[str, str],
    feedback: tuple[FeedbackCounts, FeedbackCounts] = (FeedbackCounts(), FeedbackCounts()),
) -> Difference:
    rate = arm.errors / arm.requests if arm.requests else 0.0
    reference_rate = reference.errors / reference.requests if reference.requests else 0.0
    needed = requests_needed(rate, reference_rate) if arm.requests and reference.requests else None
    return Difference(
        arm=names[0],
        reference=names[1],
        error_rate_difference=rate - reference_rate,
        error_rate_p_value=two_proportion_p_value(
            arm.errors, arm.requests, reference.errors, reference.requests
        ),
        latency_p_value=mann_whitney_p_value(arm.latency_bins, reference.latency_bins),
        requests_needed_per_arm=needed,
        requests_still_needed=None
        if needed is None
        else max(0, needed - min(arm.requests, reference.requests)),
        accuracy_p_value=two_proportion_p_value(
            feedback[0].correct, feedback[0].judged, feedback[1].correct, feedback[1].judged
        ),
        reward_p_value=reward_p_value(*feedback),
    )


def compare(
    model: str,
    since: float,
    arms: dict[str, SecondCounts],
    reference: str,
    feedback: dict[str, FeedbackCounts] | None = None,
) -> Comparison:
    """Every arm's statistics, and every other arm against `reference`."""
    said = feedback or {}
    stats = tuple(
        arm_stats(name, counts, said.get(name, FeedbackCounts()), seed=index)
        for index, (name, counts) in enumerate(arms.items())
    )
    base, base_said = arms.get(reference, SecondCounts()), said.get(reference, FeedbackCounts())
    differences = tuple(
        difference(counts, base, (name, reference), (said.get(name, FeedbackCounts()), base_said))
        for name, counts in arms.items()
        if name != reference
    )
    return Comparison(model, since, stats, differences)
