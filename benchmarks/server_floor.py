#!/usr/bin/env python
"""The CPU a Python server spends per call before doing anything: the floor under the gateway's cost.

    .venv/bin/python benchmarks/server_floor.py [--seconds 4] [--clients 16]

Each server answers every call with the same prebuilt answer (no routing, no upstream): gRPC
`ModelInfer` on grpc.aio (the gateway's gRPC front end), on the thread-pool `grpc` server and, when
installed, on grpclib (pure asyncio + h2), and a REST `POST .../infer` on uvicorn + httptools + uvloop
with a bare ASGI app (the gateway's REST front end without its handler). The same C load generators
as the other benchmarks (`h2load`, `wrk`) drive each in turn; the table gives calls/s and the
server's CPU per call, side by side in one run, and each server's CPU per call relative to grpc.aio.
Compare with the gateway's CPU per request in benchmarks/gateway_overhead.py and Triton's own in
benchmarks/serve_batching.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table
from tritonclient.grpc import service_pb2, service_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import loadgen  # noqa: E402

MODEL = "digits"
INFER_PATH = f"/v2/models/{MODEL}/infer"
console = Console(width=120)


def request_message() -> bytes:
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="pixels", datatype="FP32", shape=[1, 1, 8, 8])
    request.raw_input_contents.append(bytes(256))
    return request.SerializeToString()


def answer_message() -> service_pb2.ModelInferResponse:
    response = service_pb2.ModelInferResponse(model_name=MODEL, model_version="1")
    response.outputs.add(name="logits", datatype="FP32", shape=[1, 10])
    response.raw_output_contents.append(bytes(40))
    return response


ANSWER = answer_message()
REST_ANSWER = (
    b'{"model_name":"digits","model_version":"1","outputs":[{"name":"logits","datatype":"FP32",'
    b'"shape":[1,10],"data":[0,0,0,0,0,0,0,0,0,0]}]}'
)


class EchoServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    async def ModelInfer(self, request, context):  # type: ignore[no-untyped-def]
        return ANSWER


class SyncEchoServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def ModelInfer(self, request, context):  # type: ignore[no-untyped-def]
        return ANSWER


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_grpc_aio(port: int) -> None:
    import uvloop

    async def main() -> None:
        server = grpc.aio.server()
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(EchoServicer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main())


def serve_grpc_sync(port: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(SyncEchoServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def serve_grpclib(port: int) -> None:
    import uvloop
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server

    class Echo:
        async def model_infer(self, stream) -> None:  # type: ignore[no-untyped-def]
            await stream.recv_message()
            await stream.send_message(ANSWER)

        def __mapping__(self):  # type: ignore[no-untyped-def]
            return {
                "/inference.GRPCInferenceService/ModelInfer": Handler(
                    self.model_infer,
                    Cardinality.UNARY_UNARY,
                    service_pb2.ModelInferRequest,
                    service_pb2.ModelInferResponse,
                )
            }

    async def main() -> None:
        server = Server([Echo()])
        await server.start("127.0.0.1", port)
        await server.wait_closed()

    uvloop.run(main())


def serve_rest(port: int) -> None:
    import uvicorn

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(REST_ANSWER)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": REST_ANSWER})

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning")


SERVERS = {
    "grpc.aio (uvloop)": ("grpc", serve_grpc_aio),
    "grpc (thread pool)": ("grpc", serve_grpc_sync),
    "grpclib (asyncio + h2)": ("grpc", serve_grpclib),
    "uvicorn + httptools, bare ASGI (REST)": ("rest", serve_rest),
}


def wait_listening(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("a server exited at start")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit("a server did not start listening")


def send(protocol: str, address: str, message: bytes, args: argparse.Namespace) -> loadgen.LoadResult:
    if protocol == "grpc":
        return loadgen.h2load_grpc(address, message, args.clients, args.seconds)
    url, headers = f"http://{address}{INFER_PATH}", {"content-type": "application/json"}
    return loadgen.wrk(url, b'{"inputs":[]}', headers, args.clients, args.seconds)


def check_answer(protocol: str, address: str) -> None:
    """Refuse to time a server that does not answer as meant (h2load sees HTTP 200 even for gRPC errors)."""
    if protocol == "grpc":
        import numpy as np
        import tritonclient.grpc as grpcclient

        tensor = grpcclient.InferInput("pixels", [1, 1, 8, 8], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.float32))
        with grpcclient.InferenceServerClient(address) as client:
            logits = client.infer(MODEL, [tensor]).as_numpy("logits")
        ok = logits is not None and logits.shape == (1, 10)
    else:
        import httpx

        reply = httpx.post(f"http://{address}{INFER_PATH}", json={"inputs": []}, timeout=10)
        ok = reply.status_code == 200 and reply.json()["outputs"][0]["name"] == "logits"
    if not ok:
        raise SystemExit(
            f"the {protocol} server at {address} did not give the expected answer: not timing it"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--serve", choices=list(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:  # child process: one server
        SERVERS[args.serve][1](args.port)
        return 0
    loadgen.require("h2load", "nghttp2-client")
    loadgen.require("wrk", "wrk")
    message = request_message()
    rows = []
    for name, (protocol, _) in SERVERS.items():
        if name.startswith("grpclib") and importlib.util.find_spec("grpclib") is None:
            console.print(f"skipped {name}: grpclib is not installed")
            continue
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve", name, "--port", str(port)], cwd=ROOT, env=os.environ.copy()
        )
        try:
            wait_listening(port, process)
            check_answer(protocol, f"127.0.0.1:{port}")
            send(protocol, f"127.0.0.1:{port}", message, args)  # warm-up
            before = loadgen.process_tree_cpu_s(process.pid)
            result = send(protocol, f"127.0.0.1:{port}", message, args)
            server_cpu = loadgen.process_tree_cpu_s(process.pid) - before
        finally:
            process.terminate()
            process.wait(timeout=30)
        rows.append(
            (name, result.throughput, 1000 * server_cpu / max(result.requests, 1), result.http_errors)
        )
    reference = next((cpu for name, _, cpu, _ in rows if name.startswith("grpc.aio")), None)
    table = Table(
        title=f"no-op server floor: {args.clients} clients, {args.seconds:g} s each, {os.cpu_count()} cores",
        title_justify="left",
    )
    for column in ("server", "calls/s", "server CPU ms/call", "CPU vs grpc.aio", "errors"):
        table.add_column(column, justify="right")
    for name, rps, cpu, errors in rows:
        relative = f"{cpu / reference:.2f}x" if reference else "-"
        table.add_row(name, f"{rps:,.0f}", f"{cpu:.3f}", relative, str(errors))
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
