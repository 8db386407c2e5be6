"""C load generators for the benchmarks: `wrk` (REST) and `h2load` (gRPC over HTTP/2), plus CPU meters.

On a 2-core machine every CPU-millisecond the load generator spends is taken from Triton and the
gateway, and a Python asyncio client tops out near 4,000 req/s while eating a core. `wrk` and
`h2load` (Debian packages `wrk` and `nghttp2-client`) send the same prebuilt request over and over
from C, for a fixed time, on loopback, using a few percent of a core.

gRPC with `h2load`: a unary gRPC call is an HTTP/2 POST of a length-prefixed protobuf message to
`/inference.GRPCInferenceService/ModelInfer` with `content-type: application/grpc`. `h2load` only
sees HTTP statuses, and gRPC failures arrive as status 200 with a `grpc-status` trailer, so callers
check the count of successful inferences in Triton's statistics (`served` below).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

# The gRPC driver is the product's own (`tritium tune` measures with it); the benchmarks share it.
from tritium.serving.tuning.loadgen import LoadResult, find_tool, grpc_frame, h2load_grpc

__all__ = [
    "LoadResult",
    "find_tool",
    "grpc_frame",
    "h2load_grpc",
    "machine_busy_s",
    "process_tree_cpu_s",
    "require",
    "run_together",
    "wrk",
]

WRK_SCRIPT = Path(__file__).with_name("wrk_post.lua")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def require(tool: str, package: str) -> str:
    path = find_tool(tool)  # on PATH, or in .venv/bin where scripts/bootstrap.sh puts it
    if path is None:
        raise SystemExit(
            f"{tool} is not installed: apt-get install -y {package}, or scripts/install-load-generators.sh .venv/bin"
        )
    return path


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(url: str, body: bytes, headers: dict[str, str], clients: int, seconds: float) -> LoadResult:
    """POST `body` to `url` from `clients` keep-alive connections (one request in flight each)."""
    binary = require("wrk", "wrk")
    with tempfile.TemporaryDirectory() as scratch:
        body_file = Path(scratch) / "body"
        body_file.write_bytes(body)
        header_args = [a for k, v in headers.items() for a in ("-H", f"{k}: {v}")]
        before = _children_cpu_s()
        run = subprocess.run(
            [binary, "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(WRK_SCRIPT),
             *header_args, url, "--", str(body_file)],
            capture_output=True, text=True, timeout=seconds + 30, check=True,
        )  # fmt: skip
        cpu = _children_cpu_s() - before
    line = next(line for line in run.stdout.splitlines() if line.startswith("{"))
    summary = json.loads(line)
    return LoadResult(
        requests=summary["requests"] - summary["status_errors"],  # wrk counts non-2xx answers as requests
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p95_ms=summary["p95_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        http_errors=summary["status_errors"] + summary["socket_errors"],
        client_cpu_s=cpu,
    )


def run_together(sends: list[Callable[[], LoadResult]]) -> LoadResult:
    """Run several generators at once (one per gateway replica, say) and merge what they measured.

    Percentiles are exact where every generator kept its samples (h2load); otherwise each is the worst
    of the generators' own (wrk reports percentiles only), an upper bound.
    """
    before = _children_cpu_s()
    with ThreadPoolExecutor(len(sends)) as pool:
        results = list(pool.map(lambda send: send(), sends))
    cpu = _children_cpu_s() - before
    samples = [r.samples_ms for r in results]
    if all(s is not None for s in samples):
        merged = np.concatenate(samples)  # type: ignore[arg-type]
        p50, p95, p99 = (
            float(np.percentile(merged, q)) if len(merged) else float("nan") for q in (50, 95, 99)
        )
    else:
        merged = None
        p50, p95, p99 = (max(getattr(r, name) for r in results) for name in ("p50_ms", "p95_ms", "p99_ms"))
    return LoadResult(
        requests=sum(r.requests for r in results),
        seconds=max(r.seconds for r in results),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        http_errors=sum(r.http_errors for r in results),
        client_cpu_s=cpu,
        samples_ms=merged,
    )


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for member in tree:
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (from /proc/stat), to tell what else ran."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
