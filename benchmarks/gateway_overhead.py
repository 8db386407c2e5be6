#!/usr/bin/env python
"""Direct Triton vs through the gateway: same model, same run, REST and gRPC, 1/16/64 clients.

Starts `tritium gateway` (its own process) in front of a running Triton, then measures each
(protocol, clients) cell for direct and gateway in alternation, several rounds, and reports the
throughput ratio and the added p50/p99 latency. Clients are tritonclient's aio clients.

    python benchmarks/gateway_overhead.py --triton-http 127.0.0.1:8000 --triton-grpc 127.0.0.1:8001 \
        --model digits --seconds 5 --rounds 3 --out benchmarks/results/gateway_overhead.json
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import httpx
import numpy as np
import typer
import yaml
from rich.console import Console
from rich.table import Table

console = Console()
NUMPY_TYPES = {
    "FP32": np.float32,
    "FP16": np.float16,
    "INT64": np.int64,
    "INT32": np.int32,
    "UINT8": np.uint8,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_inputs(metadata: dict) -> list[tuple[str, str, np.ndarray]]:
    rng = np.random.default_rng(0)
    tensors = []
    for spec in metadata["inputs"]:
        shape = [1 if i == 0 and d == -1 else (8 if d == -1 else d) for i, d in enumerate(spec["shape"])]
        dtype = NUMPY_TYPES[spec["datatype"]]
        data = (
            rng.random(size=shape).astype(dtype)
            if spec["datatype"].startswith("FP")
            else np.ones(shape, dtype)
        )
        tensors.append((spec["name"], spec["datatype"], data))
    return tensors


async def load(
    protocol: str, url: str, model: str, version: str, tensors, clients: int, seconds: float
) -> tuple[int, np.ndarray]:
    if protocol == "rest":
        import tritonclient.http.aio as module
    else:
        import tritonclient.grpc.aio as module
    client = module.InferenceServerClient(
        url, **({"conn_limit": max(clients, 10)} if protocol == "rest" else {})
    )
    inputs = []
    for name, datatype, data in tensors:
        tensor = module.InferInput(name, list(data.shape), datatype)
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    latencies: list[float] = []
    for _ in range(3):  # warm-up
        await client.infer(model, inputs, model_version=version)
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await client.infer(model, inputs, model_version=version)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(clients)))
    await client.close()
    return len(latencies), np.array(latencies)


def start_gateway(triton_http: str, triton_grpc: str, model: str, version: str, workdir: Path):
    routes = workdir / "routes.yaml"
    target = {"alias": "stable", "model": model, "version": version, "weight": 100}
    routes.write_text(yaml.safe_dump({"routes": {model: {"targets": [target]}}}))
    port, grpc_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tritium.cli",
            "gateway",
            "--routes",
            str(routes),
            "--port",
            str(port),
            "--grpc-port",
            str(grpc_port),
            "--triton-http",
            triton_http,
            "--triton-grpc",
            triton_grpc,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return process, f"127.0.0.1:{port}", f"127.0.0.1:{grpc_port}"
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the gateway did not start")
        time.sleep(0.2)


def main(
    triton_http: Annotated[str, typer.Option(help="Triton HTTP host:port.")] = "127.0.0.1:8000",
    triton_grpc: Annotated[str, typer.Option(help="Triton gRPC host:port.")] = "127.0.0.1:8001",
    model: Annotated[str, typer.Option(help="Model to call.")] = "digits",
    version: Annotated[
        str, typer.Option(help="Version the gateway route targets ('' = Triton's policy).")
    ] = "",
    clients: Annotated[str, typer.Option(help="Concurrent clients per cell.")] = "1,16,64",
    protocols: Annotated[str, typer.Option(help="rest,grpc")] = "rest,grpc",
    seconds: Annotated[float, typer.Option(min=0.5, max=120, help="Seconds per measurement.")] = 5.0,
    rounds: Annotated[int, typer.Option(min=1, max=10, help="Alternating direct/gateway rounds.")] = 2,
    out: Annotated[Path | None, typer.Option(help="Write results as JSON here.")] = None,
) -> None:
    metadata = httpx.get(f"http://{triton_http}/v2/models/{model}").raise_for_status().json()
    tensors = make_inputs(metadata)
    with tempfile.TemporaryDirectory() as workdir:
        process, gw_http, gw_grpc = start_gateway(triton_http, triton_grpc, model, version, Path(workdir))
        try:
            results = []
            for protocol in protocols.split(","):
                for n in (int(c) for c in clients.split(",")):
                    cell: dict[str, list] = {"direct": [], "gateway": []}
                    for _ in range(rounds):
                        for target, url in (
                            ("direct", triton_http if protocol == "rest" else triton_grpc),
                            ("gateway", gw_http if protocol == "rest" else gw_grpc),
                        ):
                            # direct names the version; through the gateway the route picks it
                            named = version if target == "direct" else ""
                            count, lat = asyncio.run(load(protocol, url, model, named, tensors, n, seconds))
                            cell[target].append((count / seconds, lat))
                    row = {"protocol": protocol, "clients": n}
                    for target, runs in cell.items():
                        lat = np.concatenate([r[1] for r in runs])
                        row[target] = {
                            "rps": float(np.mean([r[0] for r in runs])),
                            "p50_ms": float(np.percentile(lat, 50) * 1000),
                            "p99_ms": float(np.percentile(lat, 99) * 1000),
                        }
                    row["throughput_ratio"] = row["gateway"]["rps"] / row["direct"]["rps"]
                    row["added_p50_ms"] = row["gateway"]["p50_ms"] - row["direct"]["p50_ms"]
                    row["added_p99_ms"] = row["gateway"]["p99_ms"] - row["direct"]["p99_ms"]
                    results.append(row)
                    console.print(
                        f"{protocol} x{n}: ratio {row['throughput_ratio']:.2f}, "
                        f"+p50 {row['added_p50_ms']:.2f} ms, +p99 {row['added_p99_ms']:.2f} ms"
                    )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    table = Table(title=f"gateway overhead: {model}, {seconds} s x {rounds} rounds per cell")
    for column in (
        "protocol",
        "clients",
        "direct req/s",
        "gateway req/s",
        "ratio",
        "direct p50/p99 ms",
        "gateway p50/p99 ms",
        "added p50 ms",
        "added p99 ms",
    ):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            r["protocol"],
            str(r["clients"]),
            f"{r['direct']['rps']:.0f}",
            f"{r['gateway']['rps']:.0f}",
            f"{r['throughput_ratio']:.2f}",
            f"{r['direct']['p50_ms']:.2f}/{r['direct']['p99_ms']:.2f}",
            f"{r['gateway']['p50_ms']:.2f}/{r['gateway']['p99_ms']:.2f}",
            f"{r['added_p50_ms']:.2f}",
            f"{r['added_p99_ms']:.2f}",
        )
    console.print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps({"model": model, "seconds": seconds, "rounds": rounds, "results": results}, indent=2)
        )


if __name__ == "__main__":
    typer.run(main)
