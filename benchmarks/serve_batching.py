"""Throughput and latency of `digits` on the local Triton, dynamic batching on vs off.

    .venv/bin/python benchmarks/serve_batching.py [--repository model_repository] [--seconds 4]

Serves one version of `digits` twice in one local Triton: as built (dynamic batching on) and a
copy without `dynamic_batching` (same file, same instance count); then 1/8/32 concurrent gRPC
clients (one image per request) send for a fixed time to each, interleaved, and a table gives
requests/s, p50/p95 latency, Triton's mean executed batch size, the CPU the load generator and
Triton spent per request, and the on/off throughput ratio. The load generator is `h2load` (C,
HTTP/2, a prebuilt ModelInfer message: benchmarks/loadgen.py), so it leaves the two cores to
Triton; `--client python` uses the earlier asyncio grpc.aio client instead, for comparison. Every
cell is checked against Triton's count of successful inferences. When the repository has no
`digits`, the real builder builds it into a temporary directory first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from rich.console import Console
from rich.table import Table
from tritonclient.grpc import service_pb2, service_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import loadgen  # noqa: E402
from tritium.serving.local import LocalTriton  # noqa: E402
from tritium.serving.runtime_repo import read_config, write_config  # noqa: E402

MODEL = "digits"
MODES = {"on": f"{MODEL}_batching_on", "off": f"{MODEL}_batching_off"}
console = Console(width=120)


@dataclass
class Cell:
    mode: str
    clients: int
    requests: int
    seconds: float
    throughput: float
    p50_ms: float
    p95_ms: float
    mean_batch: float
    errors: int
    client_cpu_ms: float  # per request
    triton_cpu_ms: float
    other_cores: float  # CPU used meanwhile by processes other than Triton and the generator


def ensure_digits(repository: Path, scratch: Path) -> Path:
    if (repository / MODEL / "config.pbtxt").is_file():
        return repository
    console.print(f"no {MODEL} in {repository}: building it with the real builder (about a minute)")
    from examples.build import build_examples

    built = scratch / "model_repository"
    build_examples(built, scratch / "builds", names=(MODEL,), show_progress=False)
    return built


def bench_repository(
    source: Path, target: Path, version: int | None, queue_delay_us: int | None = None
) -> tuple[int, str]:
    """Two models over the same file: as built (batching on) and without dynamic batching."""
    canonical = read_config(source / MODEL / "config.pbtxt")
    versions = sorted(canonical.version_policy.specific.versions) or sorted(
        int(p.name) for p in (source / MODEL).iterdir() if p.name.isdigit()
    )
    chosen = version or versions[-1]
    lineage = source / MODEL / str(chosen) / "lineage.json"
    variant = json.loads(lineage.read_text()).get("variant", "?") if lineage.is_file() else "?"
    for mode, name in MODES.items():
        model_dir = target / name
        (model_dir / "1").mkdir(parents=True)
        for entry in (source / MODEL / str(chosen)).iterdir():
            (model_dir / "1" / entry.name).symlink_to(entry.resolve())
        config = read_config(source / MODEL / "config.pbtxt")
        config.name = name
        config.version_policy.specific.versions[:] = [1]
        config.ClearField("model_warmup")
        if mode == "off":
            config.ClearField("dynamic_batching")
        elif queue_delay_us is not None or not config.HasField("dynamic_batching"):
            config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us or 500
        write_config(config, model_dir / "config.pbtxt")
    return chosen, variant


def check_answers(triton: LocalTriton, model_file: Path) -> None:
    """Refuse to time a broken path: both models must answer what onnxruntime computes in-process."""
    import onnxruntime as ort

    if not model_file.is_file():
        raise SystemExit(
            f"no {model_file.name} to check the answers against: this benchmark runs ONNX versions"
        )
    pixels = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"pixels": pixels})[0]
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        for model in MODES.values():
            tensor = grpcclient.InferInput("pixels", list(pixels.shape), "FP32")
            tensor.set_data_from_numpy(pixels)
            answer = client.infer(model, [tensor]).as_numpy("logits")
            if (
                answer is None
                or answer.shape != expected.shape
                or not np.allclose(answer, expected, atol=1e-3)
            ):
                raise SystemExit(
                    f"{model} answered {answer!r} where onnxruntime gives {expected!r}: not timing it"
                )


def counts(client: grpcclient.InferenceServerClient, model: str) -> tuple[int, int, int]:
    """(successful requests, inferences, executions) so far."""
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    success = int(stats["inference_stats"].get("success", {}).get("count", 0))
    return success, int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def infer_request(model: str) -> service_pb2.ModelInferRequest:
    """One prebuilt KServe v2 request (raw tensor bytes): the client spends its CPU on the wire only."""
    pixels = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="pixels", datatype="FP32", shape=[1, 1, 8, 8])
    request.raw_input_contents.append(pixels.tobytes())
    return request


def binary_rest_request() -> tuple[bytes, dict[str, str]]:
    """The same image over REST with Triton's binary-tensor extension (as tritonclient.http sends it)."""
    pixels = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "pixels",
                    "datatype": "FP32",
                    "shape": [1, 1, 8, 8],
                    "parameters": {"binary_data_size": len(pixels)},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }
    return header + pixels, headers


async def drive(url: str, model: str, clients: int, seconds: float) -> tuple[list[float], int]:
    request = infer_request(model)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    async with grpc.aio.insecure_channel(url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    await stub.ModelInfer(request)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, errors


def python_client(url: str, model: str, clients: int, seconds: float) -> loadgen.LoadResult:
    before = time.process_time()
    started = time.perf_counter()
    latencies, errors = asyncio.run(drive(url, model, clients, seconds))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return loadgen.LoadResult(
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)),
        p99_ms=float(np.percentile(ms, 99)),
        http_errors=errors,
        client_cpu_s=time.process_time() - before,
    )


def measure(triton: LocalTriton, mode: str, clients: int, seconds: float, client: str, shared: bool) -> Cell:
    model = MODES[mode]
    message = infer_request(model).SerializeToString()

    def send(duration: float) -> loadgen.LoadResult:
        if client == "python":
            return python_client(triton.grpc_url, model, clients, duration)
        if client == "wrk":
            body, headers = binary_rest_request()
            return loadgen.wrk(f"{triton.http_url}/v2/models/{model}/infer", body, headers, clients, duration)
        return loadgen.h2load_grpc(triton.grpc_url, message, clients, duration, shared_connection=shared)

    with grpcclient.InferenceServerClient(triton.grpc_url) as control:
        send(1.0)  # warm-up
        before = counts(control, model)
        triton_cpu = loadgen.process_tree_cpu_s(triton.process.pid)
        busy = loadgen.machine_busy_s()
        result = send(seconds)
        busy = loadgen.machine_busy_s() - busy
        triton_cpu = loadgen.process_tree_cpu_s(triton.process.pid) - triton_cpu
        after = counts(control, model)
    served, inferences, executions = (a - b for a, b in zip(after, before, strict=True))
    per = 1000 / max(result.requests, 1)
    return Cell(
        mode=mode,
        clients=clients,
        requests=result.requests,
        seconds=round(result.seconds, 2),
        throughput=result.throughput,
        p50_ms=result.p50_ms,
        p95_ms=result.p95_ms,
        mean_batch=inferences / executions if executions else float("nan"),
        errors=result.http_errors + max(0, result.requests - served),
        client_cpu_ms=result.client_cpu_s * per,
        triton_cpu_ms=triton_cpu * per,
        other_cores=max(0.0, busy - triton_cpu - result.client_cpu_s) / result.seconds,
    )


def table(cells: list[Cell], title: str) -> Table:
    out = Table(title=title, title_justify="left")
    for column in (
        "clients", "off req/s", "on req/s", "ratio", "off p50/p95 ms", "on p50/p95 ms", "on mean batch",
        "client CPU ms/req off/on", "Triton CPU ms/req off/on", "other cores off/on", "errors",
    ):  # fmt: skip
        out.add_column(column, justify="right")
    by_key = {(c.mode, c.clients): c for c in cells}
    for clients in sorted({c.clients for c in cells}):
        off, on = by_key[("off", clients)], by_key[("on", clients)]
        out.add_row(
            str(clients),
            f"{off.throughput:,.0f}",
            f"{on.throughput:,.0f}",
            f"{on.throughput / off.throughput:.2f}x",
            f"{off.p50_ms:.2f} / {off.p95_ms:.2f}",
            f"{on.p50_ms:.2f} / {on.p95_ms:.2f}",
            f"{on.mean_batch:.1f}",
            f"{off.client_cpu_ms:.3f} / {on.client_cpu_ms:.3f}",
            f"{off.triton_cpu_ms:.3f} / {on.triton_cpu_ms:.3f}",
            f"{off.other_cores:.2f} / {on.other_cores:.2f}",
            str(off.errors + on.errors),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--version", type=int, default=None, help="digits version (default: latest served)")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrency levels")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per cell")
    parser.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=None,
        help="override the batcher's delay (default: as built)",
    )
    parser.add_argument(
        "--client",
        choices=("h2load", "wrk", "python"),
        default="h2load",
        help="load generator: h2load (gRPC, C, default), wrk (REST, binary tensors, C) or the asyncio grpc.aio client",
    )
    parser.add_argument(
        "--shared-connection",
        action="store_true",
        help="h2load: all clients share one HTTP/2 connection (one gRPC channel) instead of one each",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the cells as JSON here")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]
    if args.client == "h2load":
        loadgen.require("h2load", "nghttp2-client")
    if args.client == "wrk":
        loadgen.require("wrk", "wrk")
    load_before = os.getloadavg()

    scratch = Path(tempfile.mkdtemp(prefix="tritium-bench-"))
    try:
        source = ensure_digits(args.repository, scratch)
        version, variant = bench_repository(
            source, scratch / "bench_repository", args.version, args.max_queue_delay_us
        )
        cells: list[Cell] = []
        with LocalTriton(scratch / "bench_repository") as triton:
            check_answers(triton, scratch / "bench_repository" / MODES["on"] / "1" / "model.onnx")
            for clients in levels:
                for mode in ("off", "on"):  # interleaved: both modes see the same machine state
                    cells.append(
                        measure(triton, mode, clients, args.seconds, args.client, args.shared_connection)
                    )
                    console.log(asdict(cells[-1]))
        delay = read_config(scratch / "bench_repository" / MODES["on"] / "config.pbtxt").dynamic_batching
        load = f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
        title = (
            f"{MODEL} v{version} ({variant}), local Triton, {'REST' if args.client == 'wrk' else 'gRPC'} ({args.client} client"
            f"{', one shared connection' if args.shared_connection else ''}), batch 1/request, "
            f"queue delay {delay.max_queue_delay_microseconds} us; {load}"
        )
        console.print(table(cells, title))
        if args.json:
            args.json.write_text(json.dumps([asdict(c) for c in cells], indent=2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
