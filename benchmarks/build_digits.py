"""digits: quantization-aware training next to static INT8 (metric, size, latency), from one build.

Builds `examples/digits/recipe.yaml` and prints, for each variant, top-1, size, and its latency
against the FP32 export as the build's performance rule measured it (interleaved rounds, one
thread, at batch 1, 8 and 64), plus the QAT training time.

    .venv/bin/python -m benchmarks.build_digits
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.cpu_info import cpu_description

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from examples.build import ensure_digits_artifacts
    from tritium.builder.pipeline import build_recipe

    ensure_digits_artifacts()
    with tempfile.TemporaryDirectory(prefix="tritium-digits-") as tmp:
        started = time.perf_counter()
        result = build_recipe(
            ROOT / "examples" / "digits" / "recipe.yaml",
            repository=Path(tmp) / "repo",
            output_dir=Path(tmp) / "out",
            show_progress=False,
        )
        seconds = time.perf_counter() - started
    baseline = result.baseline.decision.checks[0]
    print(
        f"digits, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_description()}; build {seconds:.0f} s"
    )
    print(f"baseline (torch) top1 {baseline.value:.4f}, {result.baseline.size_bytes / 1e3:.0f} KB")
    sizes = sorted(
        {c.batch_size for v in result.variants if v.performance for c in v.performance.comparisons}
    )
    header = [
        "variant",
        "status",
        "top1",
        "KB",
        *(f"latency vs FP32 export b{b}" for b in sizes),
        "seconds to build",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for variant in result.variants:
        ratios = {
            c.batch_size: c.ratio for c in (variant.performance.comparisons if variant.performance else ())
        }
        build = sum(s.seconds for s in variant.artifact.steps) if variant.artifact else 0.0
        cells = [
            variant.name,
            variant.status.value,
            f"{variant.decision.checks[0].value:.4f}" if variant.decision else "—",
            f"{variant.size_bytes / 1e3:.0f}" if variant.size_bytes else "—",
            *(f"{ratios[b]:.2f}×" if b in ratios else "—" for b in sizes),
            f"{build:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
