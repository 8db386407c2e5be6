"""`h2load` as a gRPC load generator: prebuilt ModelInfer calls from C, per-request latencies kept.

A unary gRPC call is an HTTP/2 POST of a length-prefixed protobuf to
``/inference.GRPCInferenceService/ModelInfer`` with ``content-type: application/grpc``, so ``h2load``
(Debian's ``nghttp2-client``) replays one serialized request from N connections for a fixed time and
logs every request's status and latency. It spent ~0.015 ms of CPU per request here, against ~0.06 ms
for Triton's ``perf_analyzer`` (docs/tuning.md): on a small machine the load generator shares the
cores with the server it measures. ``h2load`` only sees HTTP statuses, and gRPC failures arrive as
status 200 with a ``grpc-status`` trailer, so callers compare the count with Triton's own statistics.

The benchmarks (benchmarks/loadgen.py) use this same driver.
"""

from __future__ import annotations

import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tritium.errors import UnavailableError

GRPC_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
H2LOAD_PACKAGE = "nghttp2-client"


@dataclass
class LoadResult:
    requests: int  # answered with HTTP 200 (gRPC failures included: check against the server's count)
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    http_errors: int
    client_cpu_s: float
    samples_ms: np.ndarray | None = field(default=None, repr=False)  # per-request latencies, where known

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def find_tool(name: str) -> str | None:
    """``name`` on PATH, or beside the running Python (where scripts/bootstrap.sh puts it: .venv/bin)."""
    beside_python = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside_python) if os.access(beside_python, os.X_OK) else None)


def find_h2load() -> str:
    """The ``h2load`` binary, or a one-line error saying how to install it."""
    path = find_tool("h2load")
    if path is None:
        raise UnavailableError(
            "the load generator h2load is not installed",
            hint=f"apt-get install -y {H2LOAD_PACKAGE}, or scripts/install-load-generators.sh .venv/bin",
        )
    return path


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed)."""
    return b"\0" + struct.pack(">I", len(message)) + message


def h2load_grpc(
    address: str, message: bytes, clients: int, seconds: float, *, shared_connection: bool = False
) -> LoadResult:
    """Unary ModelInfer calls with the serialized ``message``, ``clients`` at a time, for ``seconds``.

    One HTTP/2 connection per client, or with ``shared_connection`` one connection carrying ``clients``
    concurrent streams (like one gRPC channel shared by many callers). ``address`` is ``host:port``.
    """
    connections, streams = (1, clients) if shared_connection else (clients, 1)
    binary = find_h2load()
    seconds = max(1, round(seconds))  # h2load runs whole seconds
    with tempfile.TemporaryDirectory() as scratch:
        frame, log = Path(scratch) / "frame", Path(scratch) / "log"
        frame.write_bytes(grpc_frame(message))
        before = _children_cpu_s()
        try:
            subprocess.run(
                [binary, f"-c{connections}", f"-m{streams}", "-D", str(seconds), "-d", str(frame),
                 "-H", "content-type: application/grpc", "-H", "te: trailers", "--log-file", str(log),
                 f"http://{address}{GRPC_INFER_PATH}"],
                capture_output=True, text=True, timeout=seconds + 30, check=True,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output = (getattr(exc, "stdout", "") or "") + (getattr(exc, "stderr", "") or "")
            raise UnavailableError(
                f"h2load failed against {address}: {' '.join(output.split())[-200:] or exc}"
            ) from None
        cpu = _children_cpu_s() - before
        rows = np.loadtxt(log, dtype=np.int64, ndmin=2) if log.stat().st_size else np.zeros((0, 3), np.int64)
    if not len(rows):
        return LoadResult(0, seconds, float("nan"), float("nan"), float("nan"), 0, cpu, np.zeros(0))
    ok = rows[:, 1] == 200
    elapsed_ms = rows[:, 2] / 1000
    answered = elapsed_ms[ok] if ok.any() else elapsed_ms
    return LoadResult(
        requests=int(ok.sum()),
        seconds=seconds,
        p50_ms=float(np.percentile(answered, 50)),
        p95_ms=float(np.percentile(answered, 95)),
        p99_ms=float(np.percentile(answered, 99)),
        http_errors=int((~ok).sum()),
        client_cpu_s=cpu,
        samples_ms=elapsed_ms[ok],
    )
