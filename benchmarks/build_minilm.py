"""Benchmark issue #2's targets on this machine: build `minilm`, then compare its variants.

Prints, from one run, each accepted variant's size ratio and latency ratio (batch 1 and 32,
sequence 128) against plain ORT FP32 (the unoptimized export) and against torch eager, with its
metric; plus the whole build's wall time. Latencies are measured interleaved, round-robin, so
machine noise hits every variant alike; ratios are medians of per-round ratios' inputs.

    .venv/bin/python benchmarks/build_minilm.py [--rounds 5] [--threads N]

Targets: best accepted INT8 ≥ 1.4× faster than ORT FP32 at b=32, ≥ 3.9× smaller, within the 1 %
budget; the whole minilm build ≤ 180 s.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description="minilm build benchmark")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    console = Console()

    from tritium.builder import export as exporting
    from tritium.builder.data import synthetic_inputs
    from tritium.builder.pipeline import build_recipe
    from tritium.builder.recipe import load_recipe
    from tritium.builder.runners import OrtRunner, TorchRunner, default_threads
    from tritium.builder.sources import load_source

    threads = args.threads or default_threads()
    recipe_path = ROOT / "examples" / "minilm" / "recipe.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        result = build_recipe(
            recipe_path, repository=tmp / "repo", output_dir=tmp / "out", show_progress=False
        )
        build_seconds = time.perf_counter() - start

        loaded = load_recipe(recipe_path)
        recipe = loaded.recipe
        source = load_source(loaded)
        names = [s.name for s in recipe.inputs]
        eager = TorchRunner(source.module, names, [o.name for o in recipe.outputs], "torch eager", threads)
        plain = tmp / "plain.onnx"
        exporting.export_onnx(source.module, recipe, plain)

        runners = {"torch eager": eager, "ORT FP32 (plain export)": OrtRunner(plain, "ort", threads)}
        sizes = {"torch eager": source.size_bytes, "ORT FP32 (plain export)": plain.stat().st_size}
        metrics = {"torch eager": 1.0, "ORT FP32 (plain export)": 1.0}
        for variant in result.accepted:
            ref = result.version_of(variant.name)
            path = tmp / "repo" / ref.model / str(ref.version) / variant.artifact.filename
            label = f"{variant.name} (v{ref.version})"
            runners[label] = OrtRunner(path, label, threads)
            sizes[label] = path.stat().st_size
            metrics[label] = variant.decision.checks[0].value
        rejected = [v for v in result.variants if v.status != "accepted"]

        inputs = {
            b: synthetic_inputs(recipe.inputs, b, {"sequence": 128}, np.random.default_rng(b))
            for b in (1, 32)
        }
        timings: dict[tuple[str, int], list[float]] = {(k, b): [] for k in runners for b in inputs}
        for runner in runners.values():  # warm-up
            runner.run(inputs[1])
        for _ in range(args.rounds):
            for batch, feed in inputs.items():
                for label, runner in runners.items():
                    repeats = 5 if batch == 1 else 1
                    t0 = time.perf_counter()
                    for _ in range(repeats):
                        runner.run(feed)
                    timings[(label, batch)].append((time.perf_counter() - t0) / repeats)

    median = {key: float(np.median(values)) * 1e3 for key, values in timings.items()}
    base_ort, base_eager = "ORT FP32 (plain export)", "torch eager"
    table = Table(
        title=f"minilm on {platform.processor() or platform.machine()}, {threads} threads, seq 128, {args.rounds} rounds"
    )
    for column in (
        "variant",
        "cosine",
        "MB",
        "size vs ORT",
        "b1 ms",
        "b32 ms",
        "speed-up b1 vs ORT",
        "speed-up b32 vs ORT",
        "speed-up b1 vs eager",
        "speed-up b32 vs eager",
    ):
        table.add_column(column, justify="right")
    rows = []
    for label in runners:
        row = [
            label,
            f"{metrics[label]:.4f}",
            f"{sizes[label] / 1e6:.1f}",
            f"{sizes[base_ort] / sizes[label]:.2f}×",
            f"{median[(label, 1)]:.1f}",
            f"{median[(label, 32)]:.0f}",
            f"{median[(base_ort, 1)] / median[(label, 1)]:.2f}×",
            f"{median[(base_ort, 32)] / median[(label, 32)]:.2f}×",
            f"{median[(base_eager, 1)] / median[(label, 1)]:.2f}×",
            f"{median[(base_eager, 32)] / median[(label, 32)]:.2f}×",
        ]
        rows.append(row)
        table.add_row(*row)
    console.print(table)
    for variant in rejected:
        console.print(f"rejected by the gate: {variant.name}: {variant.reason}")

    int8 = [v for v in result.accepted if "int8" in v.kind]
    if int8:
        best = max(
            int8,
            key=lambda v: (
                median[(base_ort, 32)] / median[(f"{v.name} (v{result.version_of(v.name).version})", 32)]
            ),
        )
        label = f"{best.name} (v{result.version_of(best.name).version})"
        speed = median[(base_ort, 32)] / median[(label, 32)]
        smaller = sizes[base_ort] / sizes[label]
        drop = best.decision.checks[0].drop
        console.print(
            f"targets: best INT8 {best.name}: {speed:.2f}× faster than ORT FP32 at b=32 (target ≥ 1.4: "
            f"{'met' if speed >= 1.4 else 'NOT met'}), {smaller:.2f}× smaller (≥ 3.9: {'met' if smaller >= 3.9 else 'NOT met'}), "
            f"cosine drop {drop:.4f} (≤ 0.01: {'met' if drop <= 0.01 else 'NOT met'}); build {build_seconds:.0f} s "
            f"(≤ 180: {'met' if build_seconds <= 180 else 'NOT met'})"
        )
    console.print("\nMarkdown for docs/benchmarks.md:\n")
    header = [
        "variant",
        "cosine",
        "MB",
        "size vs ORT",
        "b1 ms",
        "b32 ms",
        "×ORT b1",
        "×ORT b32",
        "×eager b1",
        "×eager b32",
    ]
    print(f"minilm, {date.today()}, {platform.machine()}, {threads} threads, build {build_seconds:.0f} s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
