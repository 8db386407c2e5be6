"""Windows of request outcomes per (public model, variant), for canary judgement.

Outcomes are kept per second: a request count, an error count and a histogram of the successful
requests' latencies in log-spaced bins 1 % wide, so a window's p99 is within 1 % of the exact one
whatever the traffic, memory stays bounded by the retention, and windows from several gateway
processes merge by adding counts (gateway/shared_outcomes.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

LATENCY_RESOLUTION = 0.01
_LOG_STEP = math.log1p(LATENCY_RESOLUTION)
_SMALLEST_LATENCY_S = 1e-6


@dataclass(frozen=True, slots=True)
class WindowSummary:
    requests: int
    errors: int
    p99_s: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(slots=True)
class SecondCounts:
    """What one (model, variant) saw in one second."""

    requests: int = 0
    errors: int = 0
    latency_bins: Counter[int] = field(default_factory=Counter)

    def add(self, other: SecondCounts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.latency_bins.update(other.latency_bins)

    def copy(self) -> SecondCounts:
        return SecondCounts(self.requests, self.errors, Counter(self.latency_bins))


def latency_bin(latency_s: float) -> int:
    return math.floor(math.log(max(latency_s, _SMALLEST_LATENCY_S)) / _LOG_STEP)


def bin_upper_bound(index: int) -> float:
    return math.exp((index + 1) * _LOG_STEP)


def p99(latencies: list[float]) -> float | None:
    """Nearest-rank 99th percentile of exact values."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def binned_p99(bins: Counter[int]) -> float | None:
    """Nearest-rank 99th percentile of binned latencies: the upper bound of the bin holding that rank."""
    total = sum(bins.values())
    if not total:
        return None
    rank = max(1, math.ceil(0.99 * total))
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return bin_upper_bound(index)
    raise AssertionError("unreachable: the ranks add up to the total")


def merge(seconds: Iterable[SecondCounts]) -> SecondCounts:
    merged = SecondCounts()
    for counts in seconds:
        merged.add(counts)
    return merged


def summarize(seconds: Iterable[SecondCounts]) -> WindowSummary:
    merged = merge(seconds)
    return WindowSummary(merged.requests, merged.errors, binned_p99(merged.latency_bins))


class Addable(Protocol):
    def add(self, other: Any) -> None: ...


C = TypeVar("C", bound=Addable)


class SecondWindows(Generic[C]):
    """Counts per (model, arm) and second, the last `retention_s` seconds of them: what feedback and
    shadow agreement keep (outcomes have their own, with the latency bins)."""

    def __init__(self, new: Callable[[], C], retention_s: int = 3600) -> None:
        self._new = new
        self.retention_s = retention_s
        self._windows: dict[tuple[str, str], dict[int, C]] = {}

    def at(self, model: str, arm: str, at: float) -> C:
        """The counts of the second holding `at`, to add to."""
        window = self._windows.setdefault((model, arm), {})
        second = int(at)
        counts = window.get(second)
        if counts is None:
            for old in [s for s in window if s < second - self.retention_s]:
                del window[old]
            counts = window[second] = self._new()
        return counts

    def merged(self, model: str, arm: str, since: float) -> C:
        total = self._new()
        for second, counts in self._windows.get((model, arm), {}).items():
            if second >= int(since):
                total.add(counts)
        return total

    def seconds_since(self, since: float) -> list[tuple[str, str, int, C]]:
        """Copies of the per-second counts from `since` on, to publish to other processes."""
        copies = []
        for (model, arm), window in self._windows.items():
            for second, counts in window.items():
                if second >= int(since):
                    copy = self._new()
                    copy.add(counts)
                    copies.append((model, arm, second, copy))
        return copies


class OutcomeWindows:
    """Per-second outcome counts per (model, variant), the last `retention_s` seconds of them."""

    def __init__(self, retention_s: int = 3600) -> None:
        self.retention_s = retention_s
        self._windows: dict[tuple[str, str], dict[int, SecondCounts]] = {}

    def record(self, model: str, variant: str, *, at: float, ok: bool, latency_s: float) -> None:
        window = self._windows.get((model, variant))
        if window is None:
            window = self._windows[(model, variant)] = {}
        second = int(at)
        counts = window.get(second)
        if counts is None:
            counts = window[second] = SecondCounts()
            self._drop_older_than(window, second - self.retention_s)
        counts.requests += 1
        if ok:
            counts.latency_bins[latency_bin(latency_s)] += 1
        else:
            counts.errors += 1

    @staticmethod
    def _drop_older_than(window: dict[int, SecondCounts], oldest_kept: int) -> None:
        for second in [s for s in window if s < oldest_kept]:
            del window[second]

    def summary(self, model: str, variant: str, *, since: float) -> WindowSummary:
        """Outcomes from the second holding `since` on."""
        return summarize([self.merged(model, variant, since=since)])

    def merged(self, model: str, variant: str, *, since: float) -> SecondCounts:
        """Every second's counts from the second holding `since` on, added up."""
        window = self._windows.get((model, variant), {})
        first = int(since)
        return merge(counts for second, counts in window.items() if second >= first)

    def seconds_since(self, since: float) -> list[tuple[str, str, int, SecondCounts]]:
        """Copies of the per-second counts from `since` on, to publish to other processes."""
        first = int(since)
        return [
            (model, variant, second, counts.copy())
            for (model, variant), window in self._windows.items()
            for second, counts in window.items()
            if second >= first
        ]

    def forget(self, model: str) -> None:
        for key in [k for k in self._windows if k[0] == model]:
            del self._windows[key]
