#!/usr/bin/env python
"""Send a bounded burst of inference requests through the gateway and print the split per variant.

Inputs are generated from the model metadata the gateway serves (batch 1, variable dims as 1...8),
so it works for the digits example (pixels FP32 [batch,1,8,8]) and any other model.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Annotated

import httpx
import numpy as np
import typer
from rich.console import Console
from rich.table import Table

VARIANT_HEADER = "x-tritium-variant"
NUMPY_TYPES = {
    "FP32": np.float32,
    "FP64": np.float64,
    "FP16": np.float16,
    "INT64": np.int64,
    "INT32": np.int32,
    "INT16": np.int16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}
console = Console()


def request_body(metadata: dict, rng: np.random.Generator) -> dict:
    inputs = []
    for spec in metadata["inputs"]:
        shape = [1 if i == 0 and d == -1 else (8 if d == -1 else d) for i, d in enumerate(spec["shape"])]
        datatype = spec["datatype"]
        if datatype == "BYTES":
            data = ["hello"] * int(np.prod(shape))
        elif datatype.startswith(("INT", "UINT")):
            data = rng.integers(0, 2, size=shape).astype(NUMPY_TYPES[datatype]).ravel().tolist()
        elif datatype == "BOOL":
            data = rng.integers(0, 2, size=shape).astype(bool).ravel().tolist()
        else:
            data = rng.random(size=shape, dtype=np.float32).astype(NUMPY_TYPES[datatype]).ravel().tolist()
        inputs.append({"name": spec["name"], "datatype": datatype, "shape": shape, "data": data})
    return {"inputs": inputs}


async def run(
    gateway_url: str,
    model: str,
    requests: int,
    concurrency: int,
    timeout_s: float,
    sticky_keys: int,
    api_key: str | None,
) -> dict[str, list[float]]:
    headers = {"x-api-key": api_key} if api_key else {}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=30) as client:
        metadata = (await client.get(f"/v2/models/{model}")).raise_for_status().json()
        body = request_body(metadata, np.random.default_rng(0))
        latencies: dict[str, list[float]] = defaultdict(list)
        errors: dict[str, int] = defaultdict(int)
        counter = iter(range(requests))
        deadline = time.monotonic() + timeout_s

        async def worker() -> None:
            for i in counter:
                if time.monotonic() > deadline:
                    return
                extra = {"x-user-id": f"user-{i % sticky_keys}"} if sticky_keys else {}
                started = time.perf_counter()
                answer = await client.post(f"/v2/models/{model}/infer", json=body, headers=extra)
                variant = answer.headers.get(VARIANT_HEADER, "?")
                if answer.status_code == 200:
                    latencies[variant].append(time.perf_counter() - started)
                else:
                    errors[f"{variant} ({answer.status_code})"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    total = sum(len(v) for v in latencies.values()) + sum(errors.values())
    table = Table(
        title=f"{model} via {gateway_url}: {total} requests in {elapsed:.1f} s ({total / elapsed:.0f} req/s)"
    )
    for column in ("variant", "requests", "share", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for variant, values in sorted(latencies.items()):
        ms = np.array(values) * 1000
        table.add_row(
            variant,
            str(len(values)),
            f"{len(values) / total:.1%}",
            f"{np.percentile(ms, 50):.2f}",
            f"{np.percentile(ms, 99):.2f}",
        )
    for variant, count in sorted(errors.items()):
        table.add_row(f"[red]error {variant}[/]", str(count), f"{count / total:.1%}", "-", "-")
    console.print(table)
    return latencies


def main(
    gateway_url: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8080",
    model: Annotated[str, typer.Option(help="Public model name.")] = "digits",
    requests: Annotated[int, typer.Option(min=1, max=1_000_000, help="Requests to send.")] = 500,
    concurrency: Annotated[int, typer.Option(min=1, max=512, help="Concurrent clients.")] = 8,
    timeout_s: Annotated[float, typer.Option(help="Stop sending after this many seconds.")] = 60.0,
    sticky_keys: Annotated[int, typer.Option(help="Send X-User-Id from this many users (0: none).")] = 0,
    api_key: Annotated[str | None, typer.Option(envvar="TRITIUM_API_KEY", help="Inference API key.")] = None,
) -> None:
    asyncio.run(run(gateway_url, model, requests, concurrency, timeout_s, sticky_keys, api_key))


if __name__ == "__main__":
    typer.run(main)
