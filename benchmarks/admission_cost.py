#!/usr/bin/env python
"""What request admission costs per REST request, side by side in one run.

    .venv/bin/python benchmarks/admission_cost.py [--seconds 1.0] [--rounds 5]

For the request bodies the gateway forwards in the other benchmarks (digits and minilm as JSON, a
binary-tensor request, a 1 MiB JSON body, a 2-D nested one), it times, in this process and
interleaved round by round: reading the body as the gateway did before admission (one receive, no
checks) and the whole admission path (names, versions, body reader with its budget and deadline,
JSON structure and nesting). It prints the median microseconds per request of each and the
difference, to compare with the gateway's CPU per request in docs/benchmarks.md (0.14–0.30 ms).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from tritium.gateway.admission import check_json_body, check_model_name, check_version, json_header_length
from tritium.gateway.body import BodyLimits, BodyReader, ByteBudget
from tritium.gateway.routes import validated_route

console = Console(width=120)
ROUTE = validated_route({"targets": [{"alias": "stable", "model": "digits", "version": "3", "weight": 100}]})


def _json(inputs: list[tuple[str, str, np.ndarray]], nested: bool = False) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": n,
                    "datatype": d,
                    "shape": list(a.shape),
                    "data": a.tolist() if nested else a.ravel().tolist(),
                }
                for n, d, a in inputs
            ]
        }
    ).encode()


def bodies() -> dict[str, tuple[bytes, str | None]]:
    rng = np.random.default_rng(0)
    digits = rng.random((1, 1, 8, 8), dtype=np.float32)
    ids = rng.integers(1000, 30000, (1, 128))
    mask = np.ones((1, 128), dtype=np.int64)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, 1, 8, 8],
                    "parameters": {"binary_data_size": 256},
                }
            ]
        }
    ).encode()
    return {
        "digits JSON (64 floats)": (_json([("input", "FP32", digits)]), None),
        "minilm JSON (2 x 128 ids)": (
            _json([("input_ids", "INT64", ids), ("attention_mask", "INT64", mask)]),
            None,
        ),
        "digits binary tensor": (header + digits.tobytes(), str(len(header))),
        "2 MB JSON (100,000 floats)": (
            _json([("x", "FP32", rng.random((1, 100_000), dtype=np.float32))]),
            None,
        ),
        "2-D nested JSON (64 x 8)": (
            _json([("x", "FP32", rng.random((64, 8), dtype=np.float32))], nested=True),
            None,
        ),
    }


def _receive(body: bytes) -> Callable:
    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _before(body: bytes, binary: str | None) -> None:
    """The pre-admission path: one receive, the length compared, nothing parsed."""
    message = await _receive(body)()
    if len(message["body"]) > 64 << 20:
        raise AssertionError
    if binary is not None and int(binary) > len(message["body"]):
        raise AssertionError


async def _admitted(body: bytes, binary: str | None, budget: ByteBudget, limits: BodyLimits) -> None:
    check_model_name("digits")
    check_version("digits", "", ROUTE)
    reader = BodyReader(budget, limits)
    try:
        data = await reader.read(_receive(body), str(len(body)), None)
        length = json_header_length(binary, len(data))
        check_json_body(data if length == len(data) else data[:length])
    finally:
        reader.release()


def _per_request_us(run: Callable[[], object], seconds: float) -> float:
    loop = asyncio.new_event_loop()
    try:
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for _ in range(50):
                loop.run_until_complete(run())
            count += 50
        return (time.perf_counter() - started) / count * 1e6
    finally:
        loop.close()


def main(
    seconds: Annotated[float, typer.Option(help="Seconds per measurement.")] = 1.0,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds (before, admitted, before, ...).")] = 5,
) -> None:
    # the body deadline is the HTTP protocol's (gateway/http_protocol.py): none here, as in the gateway
    budget, limits = ByteBudget(128 << 20), BodyLimits(64 << 20, timeout_s=None)
    table = Table(title=f"admission cost per request, median of {rounds} interleaved rounds of {seconds:g} s")
    for column in ("body", "bytes", "before µs", "admitted µs", "added µs"):
        table.add_column(column, justify="right")
    for name, (body, binary) in bodies().items():
        before, admitted = [], []
        for _ in range(rounds):
            before.append(_per_request_us(lambda b=body, h=binary: _before(b, h), seconds))
            admitted.append(
                _per_request_us(lambda b=body, h=binary: _admitted(b, h, budget, limits), seconds)
            )
        b, a = statistics.median(before), statistics.median(admitted)
        table.add_row(name, f"{len(body):,}", f"{b:.1f}", f"{a:.1f}", f"{a - b:+.1f}")
        console.log(f"{name}: {b:.1f} -> {a:.1f} µs")
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
