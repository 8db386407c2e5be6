"""How much the latency rule's measurement moves when nothing changes: a model against itself.

The performance rule (tritium.builder.perf_gate) rejects a latency-objective variant whose latency
ratio to the FP32 export exceeds 1 + tolerance in two measurements in a row. Its default
tolerance must be one that measurement noise alone cannot trip. This script measures that noise:
for each example it runs the rule's own measurement (interleaved rounds, median of per-round
ratios; the recipe's `performance` settings) between two sessions of the *same* FP32 file, several
times, at the recipe's profiled batch sizes. Any ratio away from 1.00 is noise. "worst pair" is the
lower ratio of two consecutive measurements: what a confirmed rejection would need to exceed.

    .venv/bin/python -m benchmarks.latency_rule_noise [--runs 10] [--only digits] [--busy N] [--repository DIR]

--busy N runs N busy-looping processes alongside (a machine shared with other work). Without
--repository it builds the examples (digits, minilm) into a temporary repository first.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("digits", "minilm")


def _cpu_flags() -> str:
    try:
        flags = next(
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return "?"
    wanted = ("avx2", "f16c", "avx512f", "avx512_vnni", "avx512_bf16")
    return " ".join(f for f in wanted if f" {f} " in f"{flags} ") or "none of avx2/avx512"


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(i * i for i in range(10_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--only", choices=EXAMPLES, action="append")
    parser.add_argument("--busy", type=int, default=0, help="busy-looping processes to run alongside")
    parser.add_argument("--repository", type=Path, help="a repository the examples were built into")
    args = parser.parse_args()
    console = Console()

    from examples.build import build_examples
    from tritium.builder.data import synthetic_inputs
    from tritium.builder.perf_gate import measure_once
    from tritium.builder.profiling import profile_batch_sizes
    from tritium.builder.recipe import load_recipe
    from tritium.builder.runners import OrtRunner

    names = tuple(args.only or EXAMPLES)
    with tempfile.TemporaryDirectory(prefix="tritium-noise-") as tmp:
        repository = args.repository
        if repository is None:
            repository = Path(tmp) / "model_repository"
            console.log("building the examples …")
            build_examples(repository, Path(tmp) / "builds", names, show_progress=False)
        hogs = [multiprocessing.Process(target=_busy, args=(3600,), daemon=True) for _ in range(args.busy)]
        for hog in hogs:
            hog.start()
        table = Table(
            title=f"latency rule: FP32 against itself, {args.runs} measurements each, busy={args.busy}"
        )
        for column in ("model", "batch", "rounds", "ref ms", "min", "median", "max", "worst pair"):
            table.add_column(column)
        worst = worst_pair = 1.0
        settings = None
        try:
            for name in names:
                loaded = load_recipe(ROOT / "examples" / name / "recipe.yaml")
                recipe, settings = loaded.recipe, loaded.recipe.performance
                model = repository / name / "1" / "model.onnx"  # version 1 is each example's fp32
                first = OrtRunner(model, "a", settings.threads, spinning=False)
                second = OrtRunner(model, "b", settings.threads, spinning=False)
                for batch in profile_batch_sizes(recipe):
                    inputs = synthetic_inputs(
                        recipe.inputs, batch, recipe.profile.fixed_dims, np.random.default_rng(batch)
                    )
                    found = [measure_once(second, first, inputs, batch, settings) for _ in range(args.runs)]
                    ratios = [c.ratio for c in found]
                    pairs = [min(a, b) for a, b in itertools.pairwise(ratios)]
                    worst = max(worst, max(ratios), 1 / min(ratios))
                    worst_pair = max(worst_pair, max(pairs, default=1.0))
                    console.log(f"{name} b{batch}: " + " ".join(f"{r:.3f}" for r in ratios))
                    table.add_row(
                        name,
                        str(batch),
                        str(found[0].rounds),
                        f"{statistics.median(c.reference_ms for c in found):.3f}",
                        f"{min(ratios):.3f}",
                        f"{statistics.median(ratios):.3f}",
                        f"{max(ratios):.3f}",
                        f"{max(pairs, default=1.0):.3f}",
                    )
        finally:
            for hog in hogs:
                hog.terminate()
        console.print(table)
        load = os.getloadavg()
        console.print(
            f"worst single ratio either way {worst:.3f}, worst confirmed (pair) {worst_pair:.3f}; "
            f"settings {settings.model_dump() if settings else {}}; "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} {os.cpu_count()} vCPU "
            f"({_cpu_flags()}), load average {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}"
        )


if __name__ == "__main__":
    main()
