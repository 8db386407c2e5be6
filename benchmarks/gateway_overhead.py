#!/usr/bin/env python
"""Direct Triton vs through the gateway: same model, same run, REST and gRPC, 1/16/64 clients.

    .venv/bin/python benchmarks/gateway_overhead.py [--seconds 5] [--rounds 2] [--out results.json]
    .venv/bin/python benchmarks/gateway_overhead.py --triton-http HOST:PORT --triton-grpc HOST:PORT

Without --triton-* it serves `digits` from the model repository on a local Triton of its own.
It starts `tritium gateway` (its own process, uvloop + httptools as in production) with a one-target
route to the model's version, then for each protocol and client count drives Triton directly and
through the gateway, alternating which goes first, for a fixed time per cell. The load generators
are C programs, the same for both sides (`wrk` for REST with a JSON body, `h2load` for gRPC with a
prebuilt ModelInfer message: benchmarks/loadgen.py). Every cell is checked against Triton's own
count of successful inferences. It prints requests/s, p50/p99, the throughput ratio, the added
p50/p99 and the CPU each process spent per request. Before timing anything it checks that the
gateway answers what Triton answers (REST and gRPC, non-empty). `--isolate` gives Triton half of the
cores and the gateway and generators the other half; `--replicas N` runs N gateway processes, each on
its own ports with its share of the clients (replicas behind a Service); `--workers N` runs each
gateway as N worker processes on the same ports (`tritium gateway --workers N`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
import typer
import yaml
from rich.console import Console
from rich.table import Table
from tritonclient.grpc import service_pb2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import loadgen  # noqa: E402

console = Console(width=140)
NUMPY_TYPES = {
    "FP32": np.float32,
    "FP16": np.float16,
    "INT64": np.int64,
    "INT32": np.int32,
    "UINT8": np.uint8,
}


@dataclass
class Run:
    target: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # failed answers (HTTP status, socket) + answers Triton did not count as successes
    failed: int  # of which failed answers, as the generator saw them
    client_cpu_ms: float  # per request
    gateway_cpu_ms: float
    triton_cpu_ms: float
    other_cores: float  # CPU used by processes other than Triton, the gateway and the generator


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


def rest_body(tensors) -> bytes:  # type: ignore[no-untyped-def]
    inputs = [
        {"name": n, "datatype": t, "shape": list(d.shape), "data": d.ravel().tolist()} for n, t, d in tensors
    ]
    return json.dumps({"inputs": inputs}).encode()


def grpc_message(model: str, version: str, tensors) -> bytes:  # type: ignore[no-untyped-def]
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, datatype, data in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=list(data.shape))
        request.raw_input_contents.append(data.tobytes())
    return request.SerializeToString()


def start_gateway(
    triton_http: str, triton_grpc: str, model: str, version: str, workdir: Path, workers: int = 1
):  # type: ignore[no-untyped-def]
    routes = workdir / "routes.yaml"
    target = {"alias": "stable", "model": model, "version": version, "weight": 100}
    routes.write_text(yaml.safe_dump({"routes": {model: {"targets": [target]}}}))
    port, grpc_port = free_port(), free_port()
    with (workdir / "gateway.log").open("w") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "tritium.cli", "gateway", "--routes", str(routes), "--port", str(port),
             "--grpc-port", str(grpc_port), "--triton-http", triton_http, "--triton-grpc", triton_grpc,
             "--workers", str(workers), "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return process, f"127.0.0.1:{port}", f"127.0.0.1:{grpc_port}"
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            tail = (workdir / "gateway.log").read_text(errors="replace").splitlines()[-10:]
            raise SystemExit("the gateway did not start:\n" + "\n".join(tail))
        time.sleep(0.2)


def print_gateway_logs(workdir: Path, replicas: int) -> None:
    """The gateways' warnings and errors (their logs live in a temporary directory)."""
    for index in range(replicas):
        path = workdir / str(index) / "gateway.log"
        lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
        notable = [line for line in lines if any(k in line for k in ("WARNING", "ERROR", "Traceback"))]
        console.print(f"gateway {index} log, warnings and errors ({len(notable)}):", *notable[-20:], sep="\n")


def check_answers(
    direct: tuple[str, str],
    gateway: tuple[str, str],
    model: str,
    version: str,
    tensors,  # type: ignore[no-untyped-def]
) -> None:
    """Refuse to time a broken path: over REST and gRPC, the gateway must answer what Triton answers,
    and neither may answer with empty outputs."""
    answers = []
    for (http, grpc_address), versioned in ((direct, True), (gateway, False)):
        path = f"/v2/models/{model}/versions/{version}/infer" if versioned else f"/v2/models/{model}/infer"
        reply = (
            httpx.post(f"http://{http}{path}", content=rest_body(tensors), timeout=30)
            .raise_for_status()
            .json()
        )
        rest = {o["name"]: o.get("data", []) for o in reply["outputs"]}
        inputs = []
        for name, datatype, data in tensors:
            tensor = grpcclient.InferInput(name, list(data.shape), datatype)
            tensor.set_data_from_numpy(data)
            inputs.append(tensor)
        with grpcclient.InferenceServerClient(grpc_address) as client:
            result = client.infer(model, inputs, model_version=version if versioned else "")
            grpc_answer = {
                o.name: result.as_numpy(o.name).ravel().tolist() for o in result.get_response().outputs
            }
        answers.append((rest, grpc_answer))

    def same(a: list, b: list) -> bool:  # equal lengths first: allclose broadcasts [x] against []
        return len(a) == len(b) and bool(np.allclose(a, b, atol=1e-4))

    for rest, grpc_answer in answers:
        if (
            not rest
            or rest.keys() != grpc_answer.keys()
            or any(not v for v in (*rest.values(), *grpc_answer.values()))
        ):
            raise SystemExit(f"empty or mismatched outputs ({rest!r} vs {grpc_answer!r}): not timing it")
        if not all(same(values, grpc_answer[name]) for name, values in rest.items()):
            raise SystemExit("REST and gRPC answers disagree: not timing it")
    (direct_rest, _), (gateway_rest, _) = answers
    if direct_rest.keys() != gateway_rest.keys() or not all(
        same(direct_rest[n], gateway_rest[n]) for n in direct_rest
    ):
        raise SystemExit("the gateway's answer differs from Triton's: not timing it")


def successes(control: grpcclient.InferenceServerClient, model: str, version: str) -> int:
    stats = control.get_inference_statistics(model, version, as_json=True)["model_stats"][0]
    return int(stats["inference_stats"].get("success", {}).get("count", 0))


def latest_version(http: str, model: str) -> str:
    index = httpx.post(f"http://{http}/v2/repository/index", json={"ready": True}).raise_for_status().json()
    versions = [int(m["version"]) for m in index if m["name"] == model and m.get("state") == "READY"]
    if not versions:
        raise SystemExit(f"{model} is not ready in Triton at {http}")
    return str(max(versions))


def main(
    triton_http: Annotated[
        str | None, typer.Option(help="Triton HTTP host:port (default: start one).")
    ] = None,
    triton_grpc: Annotated[str | None, typer.Option(help="Triton gRPC host:port.")] = None,
    repository: Annotated[Path, typer.Option(help="Repository for the local Triton.")] = ROOT
    / "model_repository",
    model: Annotated[str, typer.Option(help="Model to call.")] = "digits",
    version: Annotated[str, typer.Option(help="Version to call (default: latest ready).")] = "",
    clients: Annotated[str, typer.Option(help="Concurrent clients per cell.")] = "1,16,64",
    protocols: Annotated[str, typer.Option(help="rest,grpc")] = "rest,grpc",
    seconds: Annotated[float, typer.Option(min=1, max=60, help="Seconds per measurement.")] = 5.0,
    rounds: Annotated[int, typer.Option(min=1, max=10, help="Alternating direct/gateway rounds.")] = 2,
    out: Annotated[Path | None, typer.Option(help="Write results as JSON here.")] = None,
    replicas: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="Gateway processes, each on its own ports with its share of the clients (like replicas "
            "behind a Service); their CPU is summed.",
        ),
    ] = 1,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes per gateway (`tritium gateway --workers`), sharing its ports, routes, "
            "canary windows and metrics.",
        ),
    ] = 1,
    isolate: Annotated[
        bool,
        typer.Option(
            help="Give the local Triton half of the cores and the gateway and load generator the other "
            "half (the production shape: the gateway in a pod of its own) instead of sharing all cores."
        ),
    ] = False,
) -> None:
    loadgen.require("wrk", "wrk")
    loadgen.require("h2load", "nghttp2-client")
    load_before = os.getloadavg()
    cores = sorted(os.sched_getaffinity(0))
    if isolate and len(cores) < 2:
        raise SystemExit("--isolate needs at least 2 cores")
    if isolate and (triton_http or triton_grpc):
        raise SystemExit("--isolate places a local Triton: leave out --triton-http/--triton-grpc")
    triton_cores, client_cores = (
        (cores[: len(cores) // 2], cores[len(cores) // 2 :]) if isolate else (cores, cores)
    )
    with ExitStack() as stack:
        triton_pid = None
        if triton_http is None or triton_grpc is None:
            from tritium.serving.local import LocalTriton

            os.sched_setaffinity(0, triton_cores)  # inherited by tritonserver and its model stubs
            triton = stack.enter_context(LocalTriton(repository, models=[model]))
            os.sched_setaffinity(0, client_cores)  # inherited by the gateway and the load generators
            triton_http, triton_grpc, triton_pid = triton.http_address, triton.grpc_url, triton.process.pid
        version = version or latest_version(triton_http, model)
        metadata = (
            httpx.get(f"http://{triton_http}/v2/models/{model}/versions/{version}").raise_for_status().json()
        )
        tensors = make_inputs(metadata)
        body, headers = rest_body(tensors), {"content-type": "application/json"}
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        finished = False  # a run that stops early, or counts errors, prints the gateways' logs
        stack.callback(lambda: None if finished else print_gateway_logs(workdir, replicas))
        gateways = []
        for index in range(replicas):
            (workdir / str(index)).mkdir()
            gateways.append(
                start_gateway(triton_http, triton_grpc, model, version, workdir / str(index), workers)
            )
            stack.callback(
                lambda process=gateways[-1][0]: (
                    process.send_signal(signal.SIGTERM),
                    process.wait(timeout=30),
                )
            )
        control = stack.enter_context(grpcclient.InferenceServerClient(triton_grpc))
        for _, gw_http, gw_grpc in gateways:
            check_answers((triton_http, triton_grpc), (gw_http, gw_grpc), model, version, tensors)

        def sender(protocol: str, target: str, http: str, grpc_address: str, n: int, duration: float):  # type: ignore[no-untyped-def]
            if protocol == "rest":
                path = (
                    f"/v2/models/{model}/versions/{version}/infer"
                    if target == "direct"
                    else f"/v2/models/{model}/infer"
                )
                return lambda: loadgen.wrk(f"http://{http}{path}", body, headers, n, duration)
            # direct names the version; through the gateway the route picks it
            message = grpc_message(model, version if target == "direct" else "", tensors)
            return lambda: loadgen.h2load_grpc(grpc_address, message, n, duration)

        def gateways_cpu_s() -> float:
            return sum(loadgen.process_tree_cpu_s(process.pid) for process, _, _ in gateways)

        def drive(protocol: str, target: str, n: int, duration: float = seconds) -> Run:
            if target == "direct":
                send = sender(protocol, target, triton_http, triton_grpc, n, duration)
            else:  # the clients spread over the replicas as evenly as they go
                shares = [n // replicas + (i < n % replicas) for i in range(replicas)]
                sends = [
                    sender(protocol, target, http, grpc_address, share, duration)
                    for (_, http, grpc_address), share in zip(gateways, shares, strict=True)
                    if share
                ]
                send = sends[0] if len(sends) == 1 else (lambda: loadgen.run_together(sends))
            served = successes(control, model, version)
            gw_cpu = gateways_cpu_s()
            tr_cpu = loadgen.process_tree_cpu_s(triton_pid) if triton_pid else 0.0
            busy = loadgen.machine_busy_s()
            result = send()
            busy = loadgen.machine_busy_s() - busy
            gw_cpu = gateways_cpu_s() - gw_cpu
            tr_cpu = (loadgen.process_tree_cpu_s(triton_pid) - tr_cpu) if triton_pid else float("nan")
            served = successes(control, model, version) - served
            per = 1000 / max(result.requests, 1)
            return Run(
                target=target,
                rps=result.throughput,
                p50_ms=result.p50_ms,
                p99_ms=result.p99_ms,
                errors=result.http_errors + max(0, result.requests - served),
                failed=result.http_errors,
                client_cpu_ms=result.client_cpu_s * per,
                gateway_cpu_ms=gw_cpu * per,
                triton_cpu_ms=tr_cpu * per,
                other_cores=max(0.0, busy - gw_cpu - tr_cpu - result.client_cpu_s) / result.seconds
                if triton_pid
                else float("nan"),  # an outside Triton's CPU is not known
            )

        results = []
        for protocol in protocols.split(","):
            for n in (int(c) for c in clients.split(",")):
                drive(protocol, "gateway", n, 1.0)  # warm-up: connections, pools, caches
                runs: dict[str, list[Run]] = {"direct": [], "gateway": []}
                for r in range(rounds):
                    order = ("direct", "gateway") if r % 2 == 0 else ("gateway", "direct")
                    for target in order:
                        runs[target].append(drive(protocol, target, n))
                row: dict = {"protocol": protocol, "clients": n}
                for target, cell in runs.items():
                    row[target] = {
                        "rps": float(np.mean([c.rps for c in cell])),
                        "p50_ms": float(np.median([c.p50_ms for c in cell])),
                        "p99_ms": float(np.median([c.p99_ms for c in cell])),
                        "errors": sum(c.errors for c in cell),
                        "failed": sum(c.failed for c in cell),
                        "client_cpu_ms": float(np.mean([c.client_cpu_ms for c in cell])),
                        "gateway_cpu_ms": float(np.mean([c.gateway_cpu_ms for c in cell])),
                        "triton_cpu_ms": float(np.mean([c.triton_cpu_ms for c in cell])),
                        "other_cores": float(np.mean([c.other_cores for c in cell])),
                        "runs": [asdict(c) for c in cell],
                    }
                row["throughput_ratio"] = row["gateway"]["rps"] / row["direct"]["rps"]
                row["added_p50_ms"] = row["gateway"]["p50_ms"] - row["direct"]["p50_ms"]
                row["added_p99_ms"] = row["gateway"]["p99_ms"] - row["direct"]["p99_ms"]
                results.append(row)
                console.log(
                    f"{protocol} x{n}: {row['direct']['rps']:.0f} -> {row['gateway']['rps']:.0f} req/s, ratio "
                    f"{row['throughput_ratio']:.2f}, +p50 {row['added_p50_ms']:.2f} ms, "
                    f"gateway CPU {row['gateway']['gateway_cpu_ms']:.3f} ms/req"
                )
        finished = not any(row[target]["errors"] for row in results for target in ("direct", "gateway"))
    load_after = os.getloadavg()
    table = Table(
        title=f"gateway overhead: {model} v{version}, {seconds:g} s x {rounds} rounds per cell; "
        + (f"{replicas} gateway processes; " if replicas > 1 else "")
        + (f"{workers} workers per gateway; " if workers > 1 else "")
        + (
            f"Triton on cores {triton_cores}, gateway + generator on {client_cores}; "
            if isolate
            else "all share cores; "
        )
        + f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after",
        title_justify="left",
    )
    for column in (
        "protocol", "clients", "direct req/s", "gateway req/s", "ratio", "direct p50/p99 ms",
        "gateway p50/p99 ms", "added p50 ms", "gw CPU ms/req", "client CPU ms/req", "other cores", "errors",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for r in results:
        d, g = r["direct"], r["gateway"]
        table.add_row(
            r["protocol"], str(r["clients"]), f"{d['rps']:,.0f}", f"{g['rps']:,.0f}", f"{r['throughput_ratio']:.2f}",
            f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f}", f"{g['p50_ms']:.2f} / {g['p99_ms']:.2f}",
            f"{r['added_p50_ms']:.2f}", f"{g['gateway_cpu_ms']:.3f}",
            f"{d['client_cpu_ms']:.3f} / {g['client_cpu_ms']:.3f}",
            f"{d['other_cores']:.2f} / {g['other_cores']:.2f}", str(d["errors"] + g["errors"]),
        )  # fmt: skip
    console.print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = {"model": model, "version": version, "seconds": seconds, "rounds": rounds, "replicas": replicas, "workers": workers,
                   "load_average": [load_before, load_after], "results": results}  # fmt: skip
        out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    typer.run(main)
