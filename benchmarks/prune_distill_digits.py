"""digits: pruning (unstructured, structured, prune → INT8) and distillation against the issue-11 targets.

Builds `examples/digits/recipe.yaml` once, then, for every written version: top-1 and its drop,
raw and xz-compressed size (and how many times smaller than the FP32 version's raw `model.onnx`),
weight sparsity, parameter count, and latency against the FP32 version at batch 1 and the largest
profiled batch, measured like the build's performance rule (interleaved rounds, one thread, the
median of per-round ratios, the fastest call of each 10 ms window), here with 3 s per batch size.
Then each target with its measured value, and the distilled student's control beside it.

    .venv/bin/python -m benchmarks.prune_distill_digits
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from benchmarks.cpu_info import cpu_description

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from examples.build import ensure_digits_artifacts
    from tritium.builder.data import synthetic_inputs
    from tritium.builder.model_stats import COMPRESSOR
    from tritium.builder.perf_gate import measure_once
    from tritium.builder.pipeline import build_recipe
    from tritium.builder.runners import OrtRunner

    ensure_digits_artifacts()
    # the example's variants, and the same student where distillation is known to matter: 50 labels,
    # the other 1387 training samples an unlabelled transfer set (the example keeps to 8 versions)
    recipe_path = ROOT / "examples" / "digits" / "recipe.yaml"
    data = yaml.safe_load(recipe_path.read_text())
    distill = next(v for v in data["variants"] if v["kind"] == "distill")
    data["variants"].append({**distill, "name": "distill-50-labels", "labelled": 50})
    sys.path.insert(0, str(recipe_path.parent))  # the factory, digits_model:build
    with tempfile.TemporaryDirectory(prefix="tritium-prune-") as tmp:
        (Path(tmp) / "recipe.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        (Path(tmp) / "artifacts").symlink_to(recipe_path.parent / "artifacts")  # its relative paths
        started = time.perf_counter()
        result = build_recipe(
            Path(tmp) / "recipe.yaml",
            repository=Path(tmp) / "repo",
            output_dir=Path(tmp) / "out",
            show_progress=False,
        )
        seconds = time.perf_counter() - started
        recipe = result.recipe.recipe
        sizes = [1, max(recipe.profile.batch_sizes or [recipe.triton.max_batch_size])]
        settings = recipe.performance.model_copy(update={"seconds": 3.0, "rounds": 15})
        by_name = {v.name: v for v in result.variants}
        fp32 = by_name["fp32"]
        fp32_path = Path(tmp) / "repo" / "digits" / str(result.version_of("fp32").version) / "model.onnx"
        reference = OrtRunner(fp32_path, "fp32", 1, spinning=False)
        ratios: dict[str, dict[int, float]] = {}
        for variant in result.accepted:
            ref = result.version_of(variant.name)
            path = Path(tmp) / "repo" / ref.model / str(ref.version) / "model.onnx"
            runner = OrtRunner(path, variant.name, 1, spinning=False)
            ratios[variant.name] = {}
            for batch in sizes:
                inputs = synthetic_inputs(recipe.inputs, batch, {}, np.random.default_rng(batch))
                ratios[variant.name][batch] = measure_once(runner, reference, inputs, batch, settings).ratio

    baseline = result.baseline.decision.checks[0]
    print(
        f"digits, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_description()}; build {seconds:.0f} s; "
        f"compressor {COMPRESSOR}; latency: FP32 version's time / variant's (>1 = faster), 1 thread"
    )
    print(f"baseline (torch) top1 {baseline.value:.4f}")
    header = ["variant", "status", "top1", "drop", "KB", "xz KB", "× smaller than FP32 raw (xz)", "sparsity",
              "params", *(f"speed-up b{b}" for b in sizes)]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    raw = fp32.stats.raw_bytes
    for v in result.variants:
        stats, check = v.stats, v.decision.checks[0] if v.decision else None
        cells = [
            v.name,
            v.status.value,
            f"{check.value:.4f}" if check else "—",
            f"{check.drop:+.4f}" if check else "—",
            f"{stats.raw_bytes / 1e3:.0f}" if stats else "—",
            f"{stats.compressed_bytes / 1e3:.1f}" if stats and stats.compressed_bytes else "—",
            f"{raw / stats.compressed_bytes:.2f}×" if stats and stats.compressed_bytes else "—",
            f"{stats.sparsity:.3f}" if stats else "—",
            f"{stats.parameters}" if stats else "—",
            *(f"{1 / ratios[v.name][b]:.2f}×" if v.name in ratios else "—" for b in sizes),
        ]
        print("| " + " | ".join(cells) + " |")

    def target(what: str, ok: bool, measured: str) -> None:
        print(f"- {what}: {measured} — {'met' if ok else 'NOT met'}")

    print("\nTargets (issue 11):")
    pruned = by_name.get("prune-unstructured-90")
    if pruned and pruned.stats:
        drop = pruned.decision.checks[0].drop
        target("90 % unstructured within 1 point", drop <= 0.01, f"drop {drop:+.4f}")
        ratio = raw / pruned.stats.compressed_bytes
        target("its compressed file ≥ 8× smaller than the FP32 model.onnx", ratio >= 8, f"{ratio:.2f}×")
    stacked = by_name.get("prune-unstructured-90.int8-static")
    if stacked and stacked.stats:
        ratio = raw / stacked.stats.compressed_bytes
        target("≥ 10× with INT8 on top", ratio >= 10, f"{ratio:.2f}×")
    structured = by_name.get("prune-structured-50")
    if structured and structured.name in ratios:
        speed = 1 / ratios[structured.name][sizes[-1]]
        drop = structured.decision.checks[0].drop
        target(
            f"structured ≥ 1.5× faster than FP32 at b{sizes[-1]} within 1 point",
            speed >= 1.5 and drop <= 0.01,
            f"{speed:.2f}×, drop {drop:+.4f}",
        )
    for name in ("distill", "distill-50-labels"):
        student = by_name.get(name)
        if student and student.artifact:
            details = student.artifact.training.details
            control = details.get("control", {})
            print(
                f"- {name}: {details['labelled_samples']} labelled of {details['transfer_samples']} samples; "
                f"distilled top1 {control.get('student_value', float('nan')):.4f}, control (same student, "
                f"no teacher, {control.get('samples')} samples, {control.get('epochs')} epochs) "
                f"{control.get('value', float('nan')):.4f}"
            )
    student = by_name.get("distill")
    if student and student.artifact:
        details = student.artifact.training.details
        control = details.get("control", {})
        target(
            "distilled student ≥ 4× fewer parameters within budget",
            details["parameter_reduction"] >= 4 and student.decision.accepted,
            f"{details['parameter_reduction']:.2f}× fewer, top1 {student.decision.checks[0].value:.4f} "
            f"(drop {student.decision.checks[0].drop:+.4f}); control (same student, no teacher) "
            f"top1 {control.get('value', float('nan')):.4f}",
        )


if __name__ == "__main__":
    main()
