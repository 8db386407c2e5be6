"""minilm: the trade-off curve (FFN neurons kept, or layers, vs cosine vs b32 latency).

Builds all-MiniLM-L6-v2 with `prune-structured` at several amounts of the FFN's intermediate
neurons removed (1536 → 1344, 1152, 768, 384 per layer), keeping the attention and hidden-size layers
whole (`ignored_layers: ["*.attention.*", "*.output.dense"]`: torch-pruning's defaults crashed on
MiniLM with torch 2.13), each fine-tuned for a few epochs on the teacher's embeddings of the
accuracy-control sentences (`minilm_model:search_batches`, never the validation pairs), gated on
cosine (the recipe's 1 % budget) and neighbour top-1; every point is written and timed (the
build's budget is lifted), and the script says which ones the recipe's gate would accept. Then times each against the FP32 version at batch 32,
sequence 128, like the build's performance rule (interleaved rounds, one thread). Beside them,
students with fewer layers (`minilm_model:student`, the teacher's layers evenly spaced as the start)
distilled on the same sentences with the same loss.

    .venv/bin/python -m benchmarks.prune_minilm [--amounts 0.125 0.25 0.5 0.75] [--epochs 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from benchmarks.cpu_info import cpu_description

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amounts", type=float, nargs="+", default=[0.125, 0.25, 0.5, 0.75])
    parser.add_argument("--students", type=int, nargs="*", default=[4, 3], help="distilled students' layers")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "minilm")]
    import numpy as np

    from tritium.builder.data import synthetic_inputs
    from tritium.builder.perf_gate import measure_once
    from tritium.builder.pipeline import build_recipe
    from tritium.builder.runners import OrtRunner

    recipe = yaml.safe_load((ROOT / "examples" / "minilm" / "recipe.yaml").read_text())
    recipe["variants"] = (
        [{"kind": "onnx-fp32", "objective": "none"}]
        + [
            {
                "kind": "prune-structured",
                "name": f"ffn-{round(1536 * (1 - amount))}",
                "amount": amount,
                "ignored_layers": ["*.attention.*", "*.output.dense"],
                "objective": "none",
            }
            for amount in args.amounts
        ]
        + [
            {
                "kind": "distill",
                "name": f"layers-{layers}",
                "student": {"factory": "minilm_model:student", "kwargs": {"layers": layers}},
                "objective": "none",
            }
            for layers in args.students
        ]
    )
    recipe["training"] = {
        "dataset": {"kind": "factory", "factory": "minilm_model:search_batches"},
        "loss": "cosine",
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "seed": 0,
    }
    recipe["profile"] = {**recipe["profile"], "batch_sizes": [32], "iterations": 3}
    # every point is written (and timed); whether it passes the recipe's gate is judged below
    gate = recipe["budget"], {c["metric"]: c["budget"] for c in recipe["validation"]["checks"]}
    recipe["budget"] = 1.0
    recipe["validation"]["checks"] = [{**c, "budget": 1.0} for c in recipe["validation"]["checks"]]
    with tempfile.TemporaryDirectory(prefix="tritium-minilm-prune-") as tmp:
        path = Path(tmp) / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe))
        started = time.perf_counter()
        result = build_recipe(
            path, repository=Path(tmp) / "repo", output_dir=Path(tmp) / "out", show_progress=False
        )
        seconds = time.perf_counter() - started
        fp32 = result.version_of("fp32")
        reference = OrtRunner(
            Path(tmp) / "repo" / "minilm" / str(fp32.version) / "model.onnx", "fp32", 1, spinning=False
        )
        parsed = result.recipe.recipe
        settings = parsed.performance.model_copy(update={"rounds": 5, "seconds": 0.0})
        inputs = synthetic_inputs(parsed.inputs, 32, {"sequence": 128}, np.random.default_rng(0))
        speed = {}
        for variant in result.variants:
            ref = result.version_of(variant.name)
            if ref is None or variant.name == "fp32":
                continue
            runner = OrtRunner(
                Path(tmp) / "repo" / "minilm" / str(ref.version) / "model.onnx",
                variant.name,
                1,
                spinning=False,
            )
            speed[variant.name] = 1 / measure_once(runner, reference, inputs, 32, settings).ratio

    print(
        f"minilm structured pruning, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_description()}; "
        f"build {seconds:.0f} s; fine-tuning {args.epochs} epochs, lr {args.learning_rate}, cosine to the teacher"
    )
    print(
        "| variant | FFN kept | layers | cosine | neighbour top-1 | within the recipe's gate | params | MB "
        "| speed-up b32 (1 thread) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    passing: list[str] = []
    for v in result.variants:
        checks = v.decision.checks if v.decision else ()
        cells = [
            v.name,
            v.name.removeprefix("ffn-") if v.name.startswith("ffn-") else "1536",
            v.name.removeprefix("layers-") if v.name.startswith("layers-") else "6",
            f"{checks[0].value:.4f}" if checks else "—",
            f"{checks[1].value:.3f}" if len(checks) > 1 else "—",
            _verdict(checks, gate, v.name, passing) if checks else v.status.value,
            str(v.stats.parameters) if v.stats else "—",
            f"{v.stats.raw_bytes / 1e6:.1f}" if v.stats else "—",
            f"{speed[v.name]:.2f}×" if v.name in speed else ("1.00×" if v.name == "fp32" else "—"),
        ]
        print("| " + " | ".join(cells) + " |")
        if v.status.value != "accepted":
            print(f"  ({v.name}: {v.reason})")
    print(f"points within the recipe's gate (cosine drop <= {gate[0]}): {passing or 'none'}")


def _verdict(checks, gate, name: str, passing: list[str]) -> str:
    budget, others = gate
    ok = checks[0].drop <= budget and all(c.drop <= others.get(c.metric, 1.0) for c in checks[1:])
    if ok and name != "fp32":
        passing.append(name)
    return "yes" if ok else "no"


if __name__ == "__main__":
    main()
