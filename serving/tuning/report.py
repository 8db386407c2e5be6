"""What `tritium tune` shows and keeps: a table, a plot, the JSON record and its Markdown twin.

The table gives, per candidate, the point that scores it (the best one within the constraints, or the
closest), with Triton's statistics at that point — mean executed batch, queue and compute time per
request, the commonest batch sizes — so the reader sees *why* a config wins (batches form, the
queue stays short). The plot puts every candidate's points on throughput vs p99, draws the Pareto
front and marks the chosen config and the p99 limit. matplotlib comes with the builder extra; without
it the plot is skipped and the record says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.table import Table

from tritium.serving.tuning.search import Evaluation, Point, Status, pareto_front
from tritium.serving.tuning.session import TuneResult
from tritium.serving.tuning.space import changes


def scored_point(result: TuneResult, evaluation: Evaluation) -> Point | None:
    s = result.settings
    return evaluation.best(s.objective, s.constraints) or evaluation.closest(s.constraints)


def _number(value: float, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def rows(result: TuneResult) -> list[dict]:
    """One row per candidate, in the order measured."""
    out = []
    s = result.settings
    for index, evaluation in enumerate(result.search.evaluations, 1):
        point = scored_point(result, evaluation)
        stats = getattr(point, "stats", None)
        meets = evaluation.best(s.objective, s.constraints) is not None
        role = []
        if evaluation is result.search.start:
            role.append("current")
        if evaluation is result.chosen:
            role.append("chosen")
        out.append(
            {
                "#": index,
                "config": evaluation.candidate.label(),
                "role": " + ".join(role),
                "status": evaluation.status.value
                if evaluation.status is not Status.measured
                else ("meets" if meets else "misses"),
                "concurrency": point.concurrency if point else None,
                "req/s": point.throughput if point else None,
                "p50 ms": point.p50_ms if point else None,
                "p99 ms": point.p99_ms if point else None,
                "mean batch": stats.mean_batch if stats else None,
                "queue µs": stats.queue_us if stats else None,
                "compute µs": stats.compute_infer_us if stats else None,
                "batch sizes": stats.top_batches() if stats else "",
                "note": evaluation.reason,
            }
        )
    return out


def table(result: TuneResult) -> Table:
    s = result.settings
    title = (
        f"{s.model} v{result.version}: {s.mode.value} search, objective {s.objective.value}, "
        f"{s.constraints.describe()} — {len(result.search.evaluations)} candidates in {result.seconds:.0f} s"
    )
    out = Table(title=title, title_justify="left")
    for column in ("#", "config", "role", "status", "c", "req/s", "p50 ms", "p99 ms", "batch", "queue µs", "compute µs", "batch sizes"):  # fmt: skip
        out.add_column(
            column,
            overflow="fold",
            justify="right"
            if column in ("#", "c", "req/s", "p50 ms", "p99 ms", "batch", "queue µs", "compute µs")
            else "left",
        )
    styles = {"meets": "green", "misses": "yellow", "skipped": "red", "rejected": "red"}
    for row in rows(result):
        out.add_row(
            str(row["#"]),
            row["config"],
            row["role"],
            row["status"],
            str(row["concurrency"] or "-"),
            _number(row["req/s"], 0),
            _number(row["p50 ms"]),
            _number(row["p99 ms"]),
            _number(row["mean batch"], 1),
            _number(row["queue µs"], 0),
            _number(row["compute µs"], 0),
            row["batch sizes"],
            style="bold green" if "chosen" in row["role"] else styles.get(row["status"]),
        )
    return out


def notes(result: TuneResult) -> list[str]:
    """Why candidates were skipped or rejected (long sentences: printed under the table, not in it)."""
    return [
        f"{index}. {e.candidate.label()} {e.status.value}: {e.reason}"
        for index, e in enumerate(result.search.evaluations, 1)
        if e.status is not Status.measured
    ]


def record(result: TuneResult, plot: str | None) -> dict:
    """Everything measured, the machine, and what changed: the JSON record (and the tuning record)."""
    s = result.settings
    chosen = result.chosen

    def point(p: Point) -> dict:
        return {
            "concurrency": p.concurrency,
            "throughput": round(p.throughput, 1),
            "p50_ms": _json_float(p.p50_ms),
            "p99_ms": _json_float(p.p99_ms),
            "errors": p.errors,
            "triton": p.stats.as_dict() if p.stats is not None else None,
        }

    return {
        "kind": "tritium-tuning",
        "id": result.id,
        "started_at": result.started_at,
        "seconds": round(result.seconds, 1),
        "model": s.model,
        "version": result.version,
        "measured_on": result.target,
        "mode": s.mode.value,
        "objective": s.objective.value,
        "constraints": {"p99_ms": s.constraints.p99_ms, "min_throughput": s.constraints.min_throughput},
        "budget_s": s.budget.seconds,
        "seconds_per_level": s.seconds,
        "stop": result.search.stop.value,
        "candidates_planned": result.search.planned,
        "valid_for": result.validity.as_dict(),
        "current": result.start.as_dict(),
        "chosen": chosen.candidate.as_dict() if chosen else None,
        "changes": [
            {"setting": c.setting, "before": c.before, "after": c.after}
            for c in (changes(result.start, chosen.candidate) if chosen else [])
        ],
        "candidates": [
            {
                "config": e.candidate.as_dict(),
                "status": e.status.value,
                "reason": e.reason,
                "seconds": round(e.seconds, 1),
                "points": [point(p) for p in e.points],
            }
            for e in result.search.evaluations
        ],
        "plot": plot,
        "warnings": result.warnings,
    }


def _json_float(value: float) -> float | None:
    return round(value, 3) if math.isfinite(value) else None


def write(result: TuneResult, directory: Path) -> dict[str, Path | None]:
    """``tuning.json``, ``tuning.md`` and ``tuning.png`` (when matplotlib is there) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    plot_path: Path | None = directory / "tuning.png"
    try:
        plot(result, plot_path)
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib" and not (exc.name or "").startswith("matplotlib."):
            raise
        result.warnings.append("no plot: matplotlib is not installed (pip install 'tritium[builder]')")
        plot_path = None
    data = record(result, plot_path.name if plot_path else None)
    json_path = directory / "tuning.json"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    md_path = directory / "tuning.md"
    md_path.write_text(markdown(result, data))
    return {"json": json_path, "markdown": md_path, "plot": plot_path}


def markdown(result: TuneResult, data: dict) -> str:
    s = result.settings
    lines = [
        f"# Tuning {s.model} v{result.version} ({result.id})",
        "",
        f"{s.mode.value} search, objective {s.objective.value}, {s.constraints.describe()}; measured on "
        f"{result.target}; stopped: {result.search.stop.value}.",
        "",
        "| # | config | role | status | concurrency | req/s | p50 ms | p99 ms | mean batch | queue µs | compute µs | batch sizes | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows(result):
        cells = [
            row["#"], row["config"], row["role"], row["status"], row["concurrency"] or "-",
            _number(row["req/s"], 0), _number(row["p50 ms"]), _number(row["p99 ms"]),
            _number(row["mean batch"], 1), _number(row["queue µs"], 0), _number(row["compute µs"], 0),
            row["batch sizes"], row["note"].replace("|", "/"),
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        "Changes: "
        + (", ".join(f"{c['setting']} {c['before']} → {c['after']}" for c in data["changes"]) or "none"),
    ]
    lines += [
        "",
        "Valid for:",
        f"- server: {result.validity.server}",
        f"- backend: {result.validity.backend}",
    ]
    m = result.validity.machine
    lines.append(
        f"- machine: {m['cpu']}, {m['cores']} cores, {', '.join(m['instruction_sets']) or 'no AVX2'}"
    )
    lines += [f"- {note}" for note in result.validity.notes]
    if data["plot"]:
        lines += ["", f"![throughput vs p99]({data['plot']})"]
    return "\n".join(lines) + "\n"


def plot(result: TuneResult, path: Path) -> None:
    """Throughput vs p99 for every measured point; the Pareto front, the chosen config, the p99 limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.settings
    fig, ax = plt.subplots(figsize=(9, 5.5))
    everything: list[tuple[float, float]] = []
    for index, evaluation in enumerate(result.search.evaluations, 1):
        points = [p for p in evaluation.points if math.isfinite(p.p99_ms) and not p.errors]
        if not points:
            continue
        xs, ys = [p.p99_ms for p in points], [p.throughput for p in points]
        everything += list(zip(xs, ys, strict=True))
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=0.8, alpha=0.5)
        best = scored_point(result, evaluation)
        if best is not None:
            ax.annotate(
                str(index),
                (best.p99_ms, best.throughput),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    if everything:
        front = [everything[i] for i in pareto_front(everything)]
        ax.step(
            [p[0] for p in front],
            [p[1] for p in front],
            where="post",
            color="black",
            linewidth=1.2,
            label="Pareto front",
        )
    chosen = result.chosen
    if chosen is not None:
        point = chosen.best(s.objective, s.constraints)
        if point is not None:
            ax.scatter(
                [point.p99_ms],
                [point.throughput],
                s=160,
                marker="*",
                color="crimson",
                zorder=5,
                label=f"chosen: {chosen.candidate.label()}",
            )
    start_point = scored_point(result, result.search.start)
    if start_point is not None:
        ax.scatter(
            [start_point.p99_ms],
            [start_point.throughput],
            s=80,
            facecolors="none",
            edgecolors="blue",
            zorder=4,
            label="current config",
        )
    if s.constraints.p99_ms is not None:
        ax.axvline(
            s.constraints.p99_ms, color="grey", linestyle="--", label=f"p99 limit {s.constraints.p99_ms:g} ms"
        )
    if s.constraints.min_throughput is not None:
        ax.axhline(
            s.constraints.min_throughput,
            color="grey",
            linestyle=":",
            label=f"{s.constraints.min_throughput:g} req/s",
        )
    ax.set_xscale("log")  # one overloaded point can be 100x the others
    ax.set_xlabel("p99 latency (ms, log scale)")
    ax.set_ylabel("throughput (requests/s)")
    ax.set_title(
        f"{s.model} v{result.version}: each line one candidate at rising concurrency (numbers: table rows)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
