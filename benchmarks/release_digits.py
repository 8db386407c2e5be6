#!/usr/bin/env python
"""How long a release of `digits` takes end to end (build excluded), and what it costs the gateway.

    .venv/bin/python benchmarks/release_digits.py [--repository model_repository] [--window 10]

Serves `digits` from the model repository (built by `python -m examples.build`) on a local Triton
of its own with the first two versions, puts `tritium gateway` (its own process) in front with
version 1 as stable, and drives steady traffic through it (8 client threads, every answer checked).
Then, side by side in one run: the gateway's CPU per request over a window without a release, and
over the release (`tritium release --model digits --version 2 --strategy shadow-canary` with
shortened windows). Prints the release's wall time per phase, its outcome, the client failures (must
be 0) and the two CPU figures.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated

import httpx
import numpy as np
import typer
import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import loadgen  # noqa: E402

console = Console(width=120)
TOKEN = "release-benchmark"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Load:
    def __init__(self, url: str, threads: int) -> None:
        self.url, self.stop = url, threading.Event()
        self.answers, self.failures = 0, []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
        body = {
            "inputs": [
                {"name": "pixels", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": x.ravel().tolist()}
            ]
        }
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                try:
                    answer = http.post("/v2/models/digits/infer", json=body)
                    ok = answer.status_code == 200
                    reason = "" if ok else f"{answer.status_code} {answer.text[:100]}"
                except httpx.HTTPError as exc:
                    ok, reason = False, str(exc)
                with self.lock:
                    self.answers += 1
                    if not ok:
                        self.failures.append(reason)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def main(
    repository: Annotated[Path, typer.Option(help="Model repository with digits built.")] = ROOT
    / "model_repository",
    window: Annotated[float, typer.Option(help="Seconds per canary step and of the shadow.")] = 10.0,
    threads: Annotated[int, typer.Option(help="Client threads.")] = 8,
    strategy: Annotated[str, typer.Option(help="canary | shadow-canary | ab")] = "shadow-canary",
) -> None:
    from tritium.serving.local import LocalTriton
    from tritium.serving.models import load_model

    versions = sorted(int(p.name) for p in (repository / "digits").iterdir() if p.name.isdigit())
    if len(versions) < 2:
        raise SystemExit("digits needs two versions: build the examples first (python -m examples.build)")
    stable, candidate = versions[0], versions[1]
    work = Path(tempfile.mkdtemp(prefix="release-bench-"))
    with LocalTriton(repository, models=["digits"]) as triton:
        load_model(triton.grpc_url, "digits", [stable])
        routes = work / "routes.yaml"
        routes.write_text(yaml.safe_dump({"routes": {"digits": {"targets": [
            {"alias": "stable", "model": "digits", "version": str(stable), "weight": 100}]}}}))  # fmt: skip
        port = _free_port()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "tritium.cli", "gateway", "--port", str(port), "--no-grpc", "--routes", str(routes),
             "--triton-http", triton.http_url, "--triton-grpc", triton.grpc_url, "--log-level", "warning"],
            env={**os.environ, "TRITIUM_GATEWAY_ADMIN_TOKEN": TOKEN, "TRITIUM_GATEWAY_CANARY_INTERVAL_S": "1"},
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the gateway did not start")
                time.sleep(0.2)
            with Load(url, threads) as load:
                time.sleep(3)  # warm up
                if load.failures or not load.answers:
                    raise SystemExit(f"the clients' requests fail: {load.failures[:1]}")
                cpu0, answers0 = loadgen.process_tree_cpu_s(gateway.pid), load.answers
                time.sleep(window * 2)
                quiet = (loadgen.process_tree_cpu_s(gateway.pid) - cpu0) / max(1, load.answers - answers0)
                cpu1, answers1, started = (
                    loadgen.process_tree_cpu_s(gateway.pid),
                    load.answers,
                    time.monotonic(),
                )
                code = subprocess.run(
                    [sys.executable, "-m", "tritium.cli", "release", "--model", "digits", "--version", str(candidate),
                     "--strategy", strategy, "--gateway", url, "--token", TOKEN, "--triton", triton.grpc_url,
                     "--repository", str(repository), "--releases", str(work / "releases"),
                     "--steps", "25,100", "--window", str(window), "--shadow-window", str(window), "--grace", "5"],
                    check=False,
                ).returncode  # fmt: skip
                wall = time.monotonic() - started
                releasing = (loadgen.process_tree_cpu_s(gateway.pid) - cpu1) / max(1, load.answers - answers1)
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=30)
    from tritium.release.record import ReleaseStore

    (record,) = ReleaseStore(work / "releases").all("digits")
    table = Table(
        title=f"{strategy} release of digits {stable} -> {candidate}: {record.outcome.value} (exit {code}) in {wall:.1f} s"
    )
    for column in ("phase", "seconds"):
        table.add_column(column, justify="right")
    for phase, seconds in record.timings_s.items():
        table.add_row(phase, f"{seconds:.1f}")
    console.print(table)
    console.print(
        f"client requests {load.answers}, failures {len(load.failures)}; gateway CPU per request: "
        f"{quiet * 1000:.3f} ms without a release, {releasing * 1000:.3f} ms during it "
        f"({(releasing / quiet - 1) * 100:+.1f} %)"
    )


if __name__ == "__main__":
    typer.run(main)
