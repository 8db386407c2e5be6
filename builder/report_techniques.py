"""Report sections for techniques that searched or trained: accuracy control (with its plot of the
metric against the number of nodes kept in FP32) and quantization-aware training."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from tritium.builder.results import BuildResult, VariantResult


@dataclass
class Section:
    markdown: list[str]
    html: str
    files: dict[str, Path] = field(default_factory=dict)


def sections(outcome: BuildResult, out: Path) -> list[Section]:
    found = []
    for result in outcome.variants:
        artifact = result.artifact
        if artifact is not None and artifact.accuracy_control is not None:
            found.append(_accuracy_control(result, out))
        if artifact is not None and artifact.training is not None:
            found.append(_training(result))
    return found


def _accuracy_control(result: VariantResult, out: Path) -> Section:
    record = result.artifact.accuracy_control.as_record()
    metric = next(iter(record.initial_metrics))
    title = f"Accuracy control: {result.name} ({result.status.value})"
    lines = [
        f"## {title}",
        "",
        f"Searched on {record.search_set}; {record.quantizable_nodes} candidate nodes ranked by "
        f"{record.proxy}, the top {record.candidates_confirmed} confirmed on the metric. Outcome: "
        f"**{record.outcome}** after {len(record.exclusions)} exclusions ({record.seconds:.1f} s, limit "
        f"{record.max_excluded_nodes} nodes{f', {record.max_seconds:g} s' if record.max_seconds else ''}).",
        "",
        f"| excluded | node | op | proxy | {metric} on the search set |",
        "|---|---|---|---|---|",
        f"| 0 | — | — | — | {record.initial_metrics[metric]:.4f} |",
    ]
    for index, entry in enumerate(record.exclusions, 1):
        lines.append(
            f"| {index} | `{entry.node}` | {entry.op_type} | {entry.proxy:.4f} | {entry.metrics[metric]:.4f} |"
        )
    plot = _plot(record, result.name, metric, out / f"accuracy-control-{result.name}.png")
    files = {}
    if plot is not None:
        lines += ["", f"![{metric} vs excluded nodes]({plot.name})"]
        files[f"accuracy_control_{result.name}"] = plot
    rows = "".join(
        f"<tr><td>{i}</td><td>{html.escape(e.node)}</td><td>{e.op_type}</td><td>{e.proxy:.4f}</td>"
        f"<td>{e.metrics[metric]:.4f}</td></tr>"
        for i, e in enumerate(record.exclusions, 1)
    )
    image = f'<p><img src="{plot.name}" alt="{metric} vs excluded nodes"></p>' if plot else ""
    page = (
        f"<h2>{html.escape(title)}</h2><p>{html.escape(lines[2].replace('**', ''))}</p>"
        f"<table><tr><th>excluded</th><th>node</th><th>op</th><th>proxy</th><th>{metric}</th></tr>"
        f"<tr><td>0</td><td>—</td><td>—</td><td>—</td><td>{record.initial_metrics[metric]:.4f}</td></tr>{rows}"
        f"</table>{image}"
    )
    return Section([*lines, ""], page, files)


def _plot(record, name: str, metric: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [record.initial_metrics[metric], *(e.metrics[metric] for e in record.exclusions)]
    baseline, budget = record.baseline_metrics[metric], record.budgets[metric]
    limit = baseline - budget if record.higher_is_better[metric] else baseline + budget
    fig, ax = plt.subplots(figsize=(6.5, 4.0), dpi=110)
    ax.plot(range(len(values)), values, marker="o", color="tab:blue", label=f"{metric} (search set)")
    ax.axhline(limit, color="tab:red", linestyle="--", linewidth=1, label="budget limit")
    ax.set_xlabel("nodes kept in FP32")
    ax.set_ylabel(metric)
    ax.set_xticks(range(len(values)))
    ax.set_title(f"{name}: accuracy control ({record.outcome})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _training(result: VariantResult) -> Section:
    record = result.artifact.training.as_record()
    losses = ", ".join(f"{x:.4g}" for x in record.losses) or "— (your own loop)"
    loop = (
        f"factory `{record.factory}`" if record.factory else f"loss {record.loss}, {record.samples} samples"
    )
    text = (
        f"{record.technique}: {record.epochs} epochs, learning rate {record.learning_rate}, {loop}, seed "
        f"{record.seed}, {record.seconds:.1f} s (torch {record.torch}); loss per epoch: {losses}"
    )
    lines = [f"## Training: {result.name} ({result.status.value})", "", text, ""]
    facts = _details(record.details)
    if facts:
        lines += [f"- {fact}" for fact in facts] + [""]
    items = "".join(f"<li>{html.escape(fact)}</li>" for fact in facts)
    return Section(
        lines,
        f"<h2>Training: {html.escape(result.name)}</h2><p>{html.escape(text)}</p>"
        + (f"<ul>{items}</ul>" if items else ""),
    )


def _details(details: dict) -> list[str]:
    """The facts a pruning or distillation run adds, one line each (the control beside the student)."""
    facts = []
    if "target_sparsity" in details:
        facts.append(
            f"sparsity {details['sparsity']:.4f} of {details['prunable_weights']} Conv/Linear weights "
            f"(target {details['target_sparsity']}, {details['schedule']}: "
            f"{', '.join(f'{s:.3f}' for s in details['sparsity_per_epoch'])} per epoch)"
        )
    if "macs_before" in details:
        facts.append(
            f"parameters {details['parameters_before']} → {details['parameters_after']}, "
            f"MACs {details['macs_before']} → {details['macs_after']} ({details['library']})"
        )
    if "student_parameters" in details:
        facts.append(
            f"student {details['student']} {details['student_kwargs']}: {details['student_parameters']} "
            f"parameters, {details['parameter_reduction']}x fewer than the teacher; loss: {details['loss']}; "
            f"{details['labelled_samples']} labelled of {details['transfer_samples']} training samples"
        )
    control = details.get("control")
    if control and control.get("trained") and "value" in control:
        gain = control["student_value"] - control["value"]
        facts.append(
            f"control (same student, same data, no teacher): {control['metric']} {control['value']:.4f}; "
            f"distilled {control['student_value']:.4f} ({gain:+.4f}: distillation "
            f"{'beats' if gain > 0 else 'does not beat'} the control)"
        )
    elif control:
        facts.append(f"control: not trained ({control.get('why', '')})")
    return facts
