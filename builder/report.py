"""Build reports: Markdown + HTML tables, a PNG plot of metric vs latency vs size, and build.json."""

from __future__ import annotations

import html
import json
from pathlib import Path

from tritium.builder.report_techniques import sections
from tritium.builder.results import BuildResult, VariantResult, VariantStatus


def _latency_at(result: VariantResult, batch_size: int) -> float | None:
    for point in result.latency:
        if point.batch_size == batch_size:
            return point.p50_ms
    return None


def _rows(outcome: BuildResult) -> list[dict]:
    large = max((p.batch_size for p in outcome.baseline.latency), default=1)
    rows = []
    for result in [outcome.baseline, *outcome.variants]:
        primary = result.decision.checks[0] if result.decision else None
        ref = outcome.version_of(result.name)
        rows.append(
            {
                "variant": result.name,
                "kind": result.kind,
                "status": result.status.value,
                "metric": primary.value if primary else None,
                "drop": primary.drop if primary else None,
                "checks": {c.metric: c.value for c in result.decision.checks[1:]} if result.decision else {},
                "size_mb": result.size_bytes / 1e6 if result.size_bytes else None,
                "xz_mb": result.stats.compressed_bytes / 1e6
                if result.stats and result.stats.compressed_bytes
                else None,
                "sparsity": result.stats.sparsity if result.stats else None,
                "params": result.stats.parameters if result.stats else None,
                "latency_vs_fp32": _slowest_ratio(result),
                "p50_b1_ms": _latency_at(result, 1),
                f"p50_b{large}_ms": _latency_at(result, large),
                "version": f"{ref.model}/{ref.version}" if ref else "",
                "reason": result.reason if result.status is not VariantStatus.ACCEPTED else "",
            }
        )
    return rows


def _slowest_ratio(result: VariantResult) -> str | None:
    """The worst latency ratio to the FP32 export the performance rule measured, e.g. ``0.52x (b1)``."""
    slowest = result.performance.slowest if result.performance else None
    return f"{slowest.ratio:.2f}x (b{slowest.batch_size})" if slowest else None


def _fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.4f}" for k, v in value.items()) or "—"
    return str(value)


def _table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    headers = list(rows[0].keys())
    return headers, [[_fmt(row[h]) for h in headers] for row in rows]


def _plot(outcome: BuildResult, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    large = max((p.batch_size for p in outcome.baseline.latency), default=1)
    points = []
    for result in [outcome.baseline, *outcome.variants]:
        latency = _latency_at(result, large) or _latency_at(result, 1)
        primary = result.decision.checks[0] if result.decision else None
        if latency is None and result.evaluation is not None:
            latency = float("nan")
        if primary is None:
            continue
        points.append((result, latency, primary.value))
    if not points:
        return None
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    colors = {"baseline": "tab:blue", "accepted": "tab:green", "rejected": "tab:red", "failed": "tab:gray"}
    for index, (result, latency, value) in enumerate(points):
        size = (result.size_bytes or 1e6) / 1e6
        x = latency if latency == latency else 0.0  # NaN (rejected, not profiled) drawn at 0
        ax.scatter(x, value, s=40 + 8 * size, color=colors.get(result.status.value, "black"), alpha=0.7)
        ax.annotate(
            f"{result.name}\n{size:.2f} MB",
            (x, value),
            textcoords="offset points",
            xytext=(8, 10 if index % 2 else -18),
            fontsize=8,
        )
    handles = [
        Line2D([], [], marker="o", linestyle="", color=color, label=status)
        for status, color in colors.items()
        if any(r.status.value == status for r, _, _ in points)
    ]
    budget_line = outcome.baseline.decision.checks[0]
    limit = (
        budget_line.baseline - budget_line.budget
        if budget_line.higher_is_better
        else budget_line.baseline + budget_line.budget
    )
    ax.axhline(limit, color="tab:red", linestyle="--", linewidth=1)
    handles.append(Line2D([], [], color="tab:red", linestyle="--", label="budget limit"))
    front = _pareto_front(
        [(x, v) for r, x, v in points if r.status.value == "accepted" and x == x],
        budget_line.higher_is_better,
    )
    if len(front) > 1:
        ax.plot(*zip(*front, strict=True), color="tab:green", linewidth=1, linestyle=":")
    if front:
        handles.append(Line2D([], [], color="tab:green", linestyle=":", label="accepted Pareto front"))
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_xlabel(f"p50 latency at batch {large} (ms); rejected variants are not profiled (x=0)")
    ax.set_ylabel(budget_line.metric)
    ax.set_title(f"{outcome.recipe.recipe.name}: metric vs latency (marker area ∝ size)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """The points no other point beats on both latency (lower) and metric, sorted by latency."""
    sign = 1 if higher_is_better else -1
    front, best = [], float("-inf")
    for latency, value in sorted(points, key=lambda p: (p[0], -sign * p[1])):
        if sign * value > best:
            front.append((latency, value))
            best = sign * value
    return front


def _accuracy_control(result: VariantResult) -> dict | None:
    trace = result.artifact.accuracy_control if result.artifact else None
    return trace.as_record().model_dump(mode="json") if trace else None


def _build_json(outcome: BuildResult) -> dict:
    def variant(result: VariantResult) -> dict:
        ref = outcome.version_of(result.name)
        return {
            "name": result.name,
            "kind": result.kind,
            "status": result.status.value,
            "reason": result.reason,
            "checks": [
                {
                    "metric": c.metric,
                    "value": c.value,
                    "baseline": c.baseline,
                    "drop": c.drop,
                    "budget": c.budget,
                    "passed": c.passed,
                }
                for c in (result.decision.checks if result.decision else ())
            ],
            "size_bytes": result.size_bytes,
            "model_stats": result.stats.as_dict() if result.stats else None,
            "training": result.artifact.training.as_record().model_dump(mode="json")
            if result.artifact and result.artifact.training
            else None,
            "performance": result.performance.as_dict() if result.performance else None,
            "latency": [p.as_dict() for p in result.latency],
            "model": ref.model if ref else None,
            "version": ref.version if ref else None,
            "steps": [s.as_dict() for s in result.artifact.steps] if result.artifact else [],
            "accuracy_control": _accuracy_control(result),
        }

    return {
        "build_id": outcome.build_id,
        "recipe": str(outcome.recipe.path),
        "recipe_sha256": outcome.recipe.sha256,
        "repository": str(outcome.repository),
        "seconds": round(outcome.seconds, 2),
        "export_checks": list(outcome.export_checks),
        "validation": outcome.validation,
        "baseline": variant(outcome.baseline),
        "variants": [variant(v) for v in outcome.variants],
        "written": outcome.written,
        "warnings": list(outcome.warnings),
    }


def write_reports(outcome: BuildResult) -> dict[str, Path]:
    out = outcome.output_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = _rows(outcome)
    headers, cells = _table(rows)
    plot = _plot(outcome, out / "variants.png")
    recipe = outcome.recipe.recipe
    primary = outcome.baseline.decision.checks[0]
    title = f"Build {outcome.build_id}: {recipe.name}"
    summary = (
        f"Metric **{primary.metric}** (baseline {primary.baseline:.4f}), budget: drop ≤ {recipe.budget}. "
        f"{len(outcome.accepted)} of {len(outcome.variants)} variants accepted; "
        f"written: {outcome.written or 'nothing'}. Build time {outcome.seconds:.1f} s."
    )
    md = [f"# {title}", "", summary, ""]
    md += [f"> **Warning:** {warning}" for warning in outcome.warnings] + ([""] if outcome.warnings else [])
    md += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    if outcome.export_checks:
        md += [
            "",
            "Export verified against the source at: "
            + ", ".join(
                "("
                + ", ".join(f"{k}={v}" for k, v in c.items() if k != "max_abs_error")
                + f"; err {c['max_abs_error']:.2e})"
                for c in outcome.export_checks
            ),
        ]
    if plot:
        md += ["", f"![metric vs latency]({plot.name})"]
    extra = sections(outcome, out)
    for section in extra:
        md += ["", *section.markdown]
    (out / "report.md").write_text("\n".join(md) + "\n")

    warnings_html = "".join(f"<p><b>Warning:</b> {html.escape(w)}</p>" for w in outcome.warnings)
    table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"
    for row, status in zip(cells, (r["status"] for r in rows), strict=True):
        table += f'<tr class="{status}">' + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
    table += "</table>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;font-size:13px}}tr.accepted{{background:#eaffea}}tr.rejected{{background:#ffecec}}
tr.failed{{background:#eee}}</style></head><body><h1>{html.escape(title)}</h1>
<p>{html.escape(summary.replace("**", ""))}</p>{warnings_html}{table}
{f'<p><img src="{plot.name}" alt="metric vs latency"></p>' if plot else ""}
{"".join(section.html for section in extra)}</body></html>"""
    (out / "report.html").write_text(page)
    (out / "build.json").write_text(json.dumps(_build_json(outcome), indent=2) + "\n")
    reports = {"markdown": out / "report.md", "html": out / "report.html", "json": out / "build.json"}
    if plot:
        reports["plot"] = plot
    for section in extra:
        reports.update(section.files)
    return reports
