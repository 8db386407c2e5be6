"""How much the latency rule's measurement moves when nothing changes: a model against itself.

The performance rule (tritium.builder.perf_gate) rejects a latency-objective variant whose median
latency exceeds (1 + tolerance) x the FP32 export's. Its default tolerance must be one that
measurement noise alone cannot trip. This script measures that noise: for each model it runs the
rule's own comparison (interleaved rounds, medians; the recipe's `performance` settings) between
two sessions of the *same* FP32 file, several times, at the recipe's profiled batch sizes, and
prints the ratios. Any ratio away from 1.00 is noise.

    .venv/bin/python benchmarks/latency_rule_noise.py [--runs 10] [--only digits] [--repository DIR]

Without --repository it builds the examples (digits, minilm) into a temporary repository first.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from datetime import datetime, timezone
from pathlib import Path

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
    return " ".join(f for f in wanted if f" {f}" in flags) or "none of avx2/avx512"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--only", choices=EXAMPLES, action="append")
    parser.add_argument("--repository", type=Path, help="a repository the examples were built into")
    args = parser.parse_args()
    console = Console()

    from examples.build import build_examples
    from tritium.builder.perf_gate import compare_latency
    from tritium.builder.pipeline import _Build
    from tritium.builder.recipe import load_recipe
    from tritium.builder.runners import OrtRunner

    names = tuple(args.only or EXAMPLES)
    with tempfile.TemporaryDirectory(prefix="tritium-noise-") as tmp:
        repository = args.repository
        if repository is None:
            repository = Path(tmp) / "model_repository"
            console.log("building the examples …")
            build_examples(repository, Path(tmp) / "builds", names, show_progress=False)
        table = Table(title=f"latency rule: FP32 against itself, {args.runs} runs")
        for column in ("model", "batch", "ref ms (median)", "min ratio", "median ratio", "max ratio"):
            table.add_column(column)
        worst = 1.0
        for name in names:
            loaded = load_recipe(ROOT / "examples" / name / "recipe.yaml")
            recipe = loaded.recipe
            build = _Build(loaded, Path(tmp), console, show_progress=False)
            model = repository / name / "1" / "model.onnx"  # version 1 is each example's fp32
            first = OrtRunner(model, "a", build.threads, spinning=False)
            second = OrtRunner(model, "b", build.threads, spinning=False)
            ratios: dict[int, list[float]] = {}
            reference: dict[int, list[float]] = {}
            for run in range(args.runs):
                comparisons = compare_latency(
                    second,
                    first,
                    recipe.inputs,
                    build.batch_sizes(),
                    recipe.performance,
                    recipe.profile.fixed_dims,
                )
                for c in comparisons:
                    ratios.setdefault(c.batch_size, []).append(c.ratio)
                    reference.setdefault(c.batch_size, []).append(c.reference_ms)
                console.log(
                    f"{name} run {run + 1}: "
                    + ", ".join(f"b{c.batch_size} {c.ratio:.3f}" for c in comparisons)
                )
            for batch, values in ratios.items():
                worst = max(worst, max(values), 1 / min(values))
                table.add_row(
                    name,
                    str(batch),
                    f"{statistics.median(reference[batch]):.3f}",
                    f"{min(values):.3f}",
                    f"{statistics.median(values):.3f}",
                    f"{max(values):.3f}",
                )
        console.print(table)
        load = os.getloadavg()
        console.print(
            f"worst ratio either way: {worst:.3f}; settings: {recipe.performance.model_dump()}; "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} {os.cpu_count()} vCPU "
            f"({_cpu_flags()}), load average {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}"
        )


if __name__ == "__main__":
    main()
