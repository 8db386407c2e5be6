"""`tritium tune` on `digits`, then the default config and the tuned one re-measured side by side.

    .venv/bin/python benchmarks/tune_digits.py [--p99-ms 5] [--mode quick] [--seconds 3] [--rounds 3]

1. Serves `digits` (all versions, as built) on a local Triton and runs the product's search
   (tritium.serving.tuning.session.run_tune: a temporary model per candidate, h2load, every answer of a
   warm-up checked against onnxruntime) with the given p99 limit.
2. Serves the tuned version twice in a fresh Triton — `digits_default` (the canonical config as built)
   and `digits_tuned` (the same config with the tuning's changes, as `--apply` writes them) — and drives
   both with h2load at 1, 2, 4, ... 64 clients, the two interleaved, for several rounds.
3. Prints each config's best throughput with p99 within the limit (per round and the median), the ratio,
   and Triton's statistics of the tuned config at that point (mean executed batch, queue vs compute time,
   the commonest batch sizes): whether the tuned config holds its p99 when measured again.

The machine is shared on CI: the load average before and after is printed with the result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serve_batching import ensure_digits  # noqa: E402
from tritium.serving.control import TritonControl  # noqa: E402
from tritium.serving.local import LocalTriton  # noqa: E402
from tritium.serving.runtime_repo import read_config, write_config  # noqa: E402
from tritium.serving.tuning import measure  # noqa: E402
from tritium.serving.tuning.options import Mode, Objective  # noqa: E402
from tritium.serving.tuning.search import Budget, Constraints, concurrency_levels  # noqa: E402
from tritium.serving.tuning.session import Observer, TuneSettings, run_tune  # noqa: E402
from tritium.serving.tuning.space import apply_changes, changes  # noqa: E402

MODEL = "digits"
console = Console(width=160)


class Log(Observer):
    def candidate_done(self, index, evaluation) -> None:
        best = max((p.throughput for p in evaluation.points), default=0)
        console.log(f"{index}. {evaluation.candidate.label()}: up to {best:,.0f} req/s — {evaluation.reason}")


def comparison_repository(source: Path, target: Path, version: int, tuned_config) -> None:
    """`digits_default` and `digits_tuned` over the same version file (version 1 of each)."""
    canonical = read_config(source / MODEL / "config.pbtxt")
    for name, config in (("digits_default", canonical), ("digits_tuned", tuned_config)):
        model_dir = target / name
        (model_dir / "1").mkdir(parents=True)
        for entry in (source / MODEL / str(version)).iterdir():
            if entry.suffix != ".json":
                (model_dir / "1" / entry.name).symlink_to(entry.resolve())
        out = type(config)()
        out.CopyFrom(config)
        out.name = name
        out.version_policy.Clear()
        out.version_policy.specific.versions.append(1)
        out.ClearField("model_warmup")
        write_config(out, model_dir / "config.pbtxt")


def best_within(points, limit: float):
    ok = [p for p in points if p.p99_ms <= limit and not p.errors]
    return max(ok, key=lambda p: p.throughput, default=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--p99-ms", type=float, default=5.0)
    parser.add_argument("--mode", choices=[m.value for m in Mode], default="quick")
    parser.add_argument("--space", action="append", default=[], help="as tritium tune --space")
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="per concurrency level, search and re-measure"
    )
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    parser.add_argument("--max-concurrency", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=3, help="re-measure rounds (default and tuned interleaved)"
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="tritium-tune-bench-"))
    try:
        source = ensure_digits(args.repository, scratch)
        served = scratch / "served"
        shutil.copytree(source / MODEL, served / MODEL, symlinks=True)
        with LocalTriton(served, models=[MODEL]) as triton:
            settings = TuneSettings(
                model=MODEL, url=triton.grpc_url, repository=served, objective=Objective.throughput,
                constraints=Constraints(p99_ms=args.p99_ms), mode=Mode(args.mode),
                budget=Budget(args.budget_minutes * 60), space=tuple(args.space), seconds=args.seconds,
                max_concurrency=args.max_concurrency,
            )  # fmt: skip
            result = run_tune(settings, Log())
        if result.chosen is None:
            console.print(f"no config met p99 ≤ {args.p99_ms} ms: nothing to compare")
            return 1
        diff = changes(result.start, result.chosen.candidate)
        console.print(
            f"search: {len(result.search.evaluations)} candidates in {result.seconds:.0f} s ({result.search.stop.value}); "
            f"chosen {result.chosen.candidate.label()}; changes: {', '.join(map(str, diff)) or 'none'}"
        )
        canonical = read_config(served / MODEL / "config.pbtxt")
        tuned = apply_changes(canonical, result.start, result.chosen.candidate)
        compare = scratch / "compare"
        comparison_repository(served, compare, result.version, tuned)
        levels = concurrency_levels(args.max_concurrency)
        points: dict[str, list[list]] = {"digits_default": [], "digits_tuned": []}
        with LocalTriton(compare) as triton, TritonControl(triton.grpc_url) as control:
            for name in points:  # the same warm-up and answer check the search does
                config = control.model_config(name)
                import onnxruntime as ort

                session = ort.InferenceSession(
                    str(compare / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
                )
                wrong = measure.check_answers(triton.grpc_url, name, 1, config, session)
                if wrong:
                    raise SystemExit(f"{name}: {wrong}")
            for round_ in range(args.rounds):
                for name in points:
                    points[name].append([])
                for level in levels:
                    order = list(points) if round_ % 2 == 0 else list(reversed(points))
                    for name in order:  # interleaved, alternating who goes first
                        config = control.model_config(name)
                        message = measure.infer_message(name, 1, config)
                        points[name][-1].append(
                            measure.measure_level(control, name, 1, message, level, args.seconds)
                        )
                console.log(f"round {round_ + 1} done")
        table = Table(
            title=f"digits v{result.version}: best throughput with p99 ≤ {args.p99_ms:g} ms, re-measured",
            title_justify="left",
        )
        for column in (
            "config",
            "per round req/s (clients)",
            "median req/s",
            "p99 ms at best",
            "mean batch",
            "queue µs",
            "compute infer µs",
            "batch sizes",
        ):
            table.add_column(column)
        medians = {}
        for name, rounds in points.items():
            bests = [best_within(r, args.p99_ms) for r in rounds]
            values = [b.throughput if b else 0.0 for b in bests]
            medians[name] = statistics.median(values)
            top = max((b for b in bests if b), key=lambda b: b.throughput, default=None)
            stats = top.stats if top else None
            table.add_row(
                name.removeprefix("digits_"),
                ", ".join(f"{b.throughput:,.0f} ({b.concurrency})" if b else "none" for b in bests),
                f"{medians[name]:,.0f}",
                f"{top.p99_ms:.2f}" if top else "-",
                f"{stats.mean_batch:.1f}" if stats else "-",
                f"{stats.queue_us:,.0f}" if stats else "-",
                f"{stats.compute_infer_us:,.0f}" if stats else "-",
                stats.top_batches() if stats else "",
            )
        console.print(table)
        if medians["digits_default"]:
            console.print(f"tuned / default: {medians['digits_tuned'] / medians['digits_default']:.2f}x")
        load_after = os.getloadavg()
        console.print(
            f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; {os.cpu_count()} CPUs"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
