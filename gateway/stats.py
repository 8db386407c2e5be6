"""Sliding windows of request outcomes per (public model, variant), for canary judgement."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowSummary:
    requests: int
    errors: int
    p99_s: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def p99(latencies: list[float]) -> float | None:
    """Nearest-rank 99th percentile."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


class OutcomeWindows:
    """Bounded in-memory record of (time, ok, latency) per (model, variant)."""

    def __init__(self, max_per_variant: int = 50_000) -> None:
        self._max = max_per_variant
        self._windows: dict[tuple[str, str], deque[tuple[float, bool, float]]] = {}

    def record(self, model: str, variant: str, *, at: float, ok: bool, latency_s: float) -> None:
        window = self._windows.get((model, variant))
        if window is None:
            window = self._windows[(model, variant)] = deque(maxlen=self._max)
        window.append((at, ok, latency_s))

    def summary(self, model: str, variant: str, *, since: float) -> WindowSummary:
        window = self._windows.get((model, variant), ())
        recent = [(ok, latency) for at, ok, latency in window if at >= since]
        errors = sum(1 for ok, _ in recent if not ok)
        return WindowSummary(len(recent), errors, p99([latency for ok, latency in recent if ok]))

    def forget(self, model: str) -> None:
        for key in [k for k in self._windows if k[0] == model]:
            del self._windows[key]
