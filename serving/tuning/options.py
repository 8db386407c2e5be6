"""The choices of `tritium tune` (enum only: the CLI imports this at module level)."""

from __future__ import annotations

from enum import Enum


class Objective(str, Enum):
    throughput = "throughput"  # most requests/s within the p99 limit
    latency = "latency"  # lowest p99 at the throughput asked for


class Mode(str, Enum):
    quick = "quick"  # climb from the current config
    brute = "brute"  # the whole grid
