"""What the gateway's per-request metric updates cost, in memory vs in multiprocess mode.

`.venv/bin/python benchmarks/metrics_cost.py [--requests 200000]` runs the updates one inference
request makes (in-flight up and down, the request counter, the two latency histograms) on the real
metric children of tritium.gateway.metrics, once in a process with in-memory metrics and once in a process
in prometheus-client's multiprocess mode (what `tritium gateway --workers N` runs), and prints the
cost per request of each and their ratio.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

MEASURE = """
import sys, time
from tritium.gateway import metrics
requests = metrics.REQUESTS.labels("m", "1", "stable", "rest", "200")
duration = metrics.REQUEST_DURATION.labels("m", "stable", "rest")
upstream = metrics.UPSTREAM_DURATION.labels("m", "stable", "rest")
in_flight = metrics.IN_FLIGHT.labels("rest")
n = int(sys.argv[1])
start = time.perf_counter()
for _ in range(n):
    in_flight.inc(); requests.inc(); duration.observe(0.0012); upstream.observe(0.001); in_flight.dec()
print((time.perf_counter() - start) / n)
"""


def per_request_s(requests: int, multiprocess_dir: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if multiprocess_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(requests)], env=env, capture_output=True, text=True, check=True
    )
    return float(result.stdout)


def main(
    requests: Annotated[int, typer.Option(min=1000, help="Requests' updates per measurement.")] = 200_000,
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        timings = {"in memory (1 worker)": [], "multiprocess (--workers N)": []}
        for _ in range(3):  # alternate, keep the best of each
            timings["in memory (1 worker)"].append(per_request_s(requests, None))
            timings["multiprocess (--workers N)"].append(per_request_s(requests, directory))
    best = {name: min(values) for name, values in timings.items()}
    base = best["in memory (1 worker)"]
    table = Table(
        "metrics", "µs per request", "vs in memory", title=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    )
    for name, seconds in best.items():
        table.add_row(name, f"{seconds * 1e6:.1f}", f"{seconds / base:.2f}×")
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
