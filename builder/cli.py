"""`tritium build`, `tritium models list` and `tritium models show`."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _console() -> Console:
    return Console()


RepositoryOption = Annotated[
    Path, typer.Option("--repository", "-r", help="Triton model repository", envvar="TRITIUM_REPOSITORY")
]


def build(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file")],
    repository: RepositoryOption = Path("model_repository"),
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Folder for the report (default builds/<name>/<build id>)"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output")] = False,
    device: Annotated[
        str | None,
        typer.Option(
            "--device", help="Validate and profile on cpu or cuda (overrides the recipe's profile.device)"
        ),
    ] = None,
) -> None:
    """Build a recipe: baseline, export, optimize, validate, profile, write versions, report."""
    from tritium.builder.pipeline import build_recipe
    from tritium.builder.report import _rows

    result = build_recipe(
        recipe, repository=repository, output_dir=output, show_progress=not quiet, device=device
    )
    table = Table(title=f"{result.recipe.recipe.name}: build {result.build_id} ({result.seconds:.0f} s)")
    rows = _rows(result)
    if not any(row["checks"] for row in rows):
        rows = [{k: v for k, v in row.items() if k != "checks"} for row in rows]
    # the reasons are long sentences: printed in full under the table, not folded into a column;
    # compressed size, sparsity and parameters only where they tell variants apart (report.md has all)
    dropped = {"kind", "reason"}
    if not any((row["sparsity"] or 0) > 0.05 for row in rows):
        dropped |= {"sparsity", "xz_mb"}
    if len({row["params"] for row in rows if row["params"]}) <= 1:
        dropped.add("params")
    rows = [{k: v for k, v in row.items() if k not in dropped} for row in rows]
    for header in rows[0]:
        table.add_column(header, overflow="fold")
    styles = {"accepted": "green", "rejected": "yellow", "failed": "red"}
    for row in rows:
        table.add_row(*[_cell(v) for v in row.values()], style=styles.get(row["status"]))
    console = _console()
    console.print(table)
    for variant in result.variants:
        if variant.status.value != "accepted":
            style = styles[variant.status.value]
            console.print(
                f"[{style}]{escape(variant.name)} {variant.status.value}:[/] {escape(variant.reason)}",
                highlight=False,
                soft_wrap=True,
            )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    console.print(f"written: {result.written}")
    console.print(f"report: {result.reports['markdown']}  plot: {result.reports.get('plot')}")
    if result.failed:
        from tritium.errors import VariantsFailedError

        failed = ", ".join(v.name for v in result.failed)
        raise VariantsFailedError(
            f"{len(result.failed)} of {len(result.variants)} variants the recipe asked for failed ({failed}, "
            f"reasons above); the others were validated and written: {result.written}",
            hint=f"fix the cause or remove those variants from the recipe; report: {result.reports['markdown']}",
        )


def _cell(value: object) -> str:
    from tritium.builder.report import _fmt

    return _fmt(value)


def models_list(repository: RepositoryOption = Path("model_repository")) -> None:
    """List the models and versions in a repository."""
    from tritium.builder.repository import list_models

    models = list_models(repository)
    console = _console()
    if not models:
        console.print(f"no models in {repository}")
        return
    table = _models_table(str(repository), models, narrow=False)
    # measured unbounded: a measurement within the console's options is capped at its width
    if console.measure(table, options=console.options.update_width(10_000)).maximum > console.width:
        table = _models_table(str(repository), models, narrow=True)
    console.print(table)


# In a narrow terminal (80 columns), names break after their "-", "_" and "." to these widths: the
# longest Triton platform name ("onnxruntime_onnx") and the builder's variant parts
# ("int8-dynamic-", "per-channel").
NAME_WIDTH = 16
VARIANT_WIDTH = 13


def _models_table(title: str, models: list, *, narrow: bool) -> Table:
    """One row per version: the model's name with its Triton platform under it, and the lineage.

    Laid out for an 80-column terminal on purpose rather than cut by rich to "platfo…"/"int8-s…":
    the platform shares the model's cell, the date is to the minute in UTC, and when the table
    does not fit, the metric and the date wrap at their space and names break after "-", "_", ".".
    A single part longer than its column is folded onto the next line, never cut.
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    # Narrow: the columns holding names get fixed widths (their text is broken here, a longer part
    # folds), so rich shrinks only metric, MB and date, which wrap at their spaces.
    fixed = {"model": NAME_WIDTH, "version": 7, "variant": VARIANT_WIDTH, "served": 6} if narrow else {}
    for column in ("model", "version", "variant", "metric", "MB", "served", "created (UTC)"):
        table.add_column(
            column, overflow="fold", width=fixed.get(column), justify="right" if column == "MB" else "left"
        )
    for model in models:
        platform = model.config.platform or model.config.backend
        for index, version in enumerate(model.versions):
            lineage = version.lineage
            metric = lineage.get("metric", {})
            variant = str(lineage.get("variant", "?"))
            name = f"{model.name}\n{platform}"
            if narrow:
                name = f"{_break_names(model.name, NAME_WIDTH)}\n{_break_names(platform, NAME_WIDTH)}"
                variant = _break_names(variant, VARIANT_WIDTH)
            table.add_row(
                escape(name),  # lineage.json is a file anyone can edit: never markup
                str(version.version),
                escape(variant),
                escape(_metric(metric)),
                f"{lineage.get('size_bytes', 0) / 1e6:.2f}",
                "yes" if version.served else "no",
                escape(_minutes_utc(str(lineage.get("created_at", "")))),
                end_section=index == len(model.versions) - 1,
            )
    return table


def _metric(metric: object) -> str:
    if not isinstance(metric, dict) or not metric:
        return "—"
    value = metric.get("value")
    shown = f"{value:.4f}" if isinstance(value, int | float) else "?"
    return f"{metric.get('name', '')} {shown}"


def _break_names(name: str, width: int) -> str:
    """``int8-dynamic-per-channel`` → ``int8-dynamic-`` / ``per-channel`` (lines up to ``width``)."""
    lines: list[str] = []
    for part in re.findall(r"[^-_.]+[-_.]?|[-_.]", name):
        if lines and len(lines[-1]) + len(part) <= width:
            lines[-1] += part
        else:
            lines.append(part)
    return "\n".join(lines)


def _minutes_utc(created_at: str) -> str:
    """``2026-11-27T15:02:23+00:00`` → ``2026-11-27 15:02`` (UTC); anything unparsable as it is."""
    try:
        moment = datetime.fromisoformat(created_at)
    except ValueError:
        return created_at
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M")


def models_show(
    name: Annotated[str, typer.Argument(help="Model name")],
    repository: RepositoryOption = Path("model_repository"),
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="Show one version's full lineage")
    ] = None,
) -> None:
    """Show a model's config and each version's lineage."""
    from tritium.builder.repository import read_model
    from tritium.builder.triton_config import to_pbtxt
    from tritium.errors import NotFoundError

    model = read_model(repository, name)
    if version is not None:
        match = [v for v in model.versions if v.version == version]
        if not match:
            raise NotFoundError(
                f"model {name!r} has no version {version}",
                hint=f"versions: {[v.version for v in model.versions]}",
            )
        _console().print_json(json.dumps(match[0].lineage))
        return
    _console().rule(f"{name} — config.pbtxt")
    _console().print(to_pbtxt(model.config), highlight=False)
    table = Table(title=f"{name}: lineage")
    for column in (
        "version",
        "variant",
        "parent",
        "metric (drop)",
        "size MB",
        "p50 ms b1",
        "steps",
        "source sha256",
    ):
        table.add_column(column, overflow="fold")
    for v in model.versions:
        lineage = v.lineage
        metric = lineage.get("metric", {})
        b1 = next((p["p50_ms"] for p in lineage.get("latency", []) if p["batch_size"] == 1), None)
        table.add_row(
            str(v.version),
            lineage.get("variant", "?"),
            str(lineage.get("parent_version") or "—"),
            f"{metric.get('value', float('nan')):.4f} ({metric.get('drop', 0):+.4f})" if metric else "—",
            f"{lineage.get('size_bytes', 0) / 1e6:.2f}",
            f"{b1:.3f}" if b1 is not None else "—",
            " → ".join(s["name"] for s in lineage.get("steps", [])),
            lineage.get("source", {}).get("sha256", "")[:12],
        )
    _console().print(table)


def engines(
    model: Annotated[str, typer.Argument(help="The ONNX model in the repository (its recipe's name)")],
    recipe: Annotated[
        Path, typer.Option("--recipe", help="The recipe it was built from (input spec, batch sizes)")
    ],
    repository: RepositoryOption = Path("model_repository"),
    version: Annotated[
        int | None, typer.Option("--version", help="ONNX version to build from (default the latest served)")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder for the job (default deploy/engines/MODEL)")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option("--image", help="Triton image the engine is for (default: the serve command's)"),
    ] = None,
    precision: Annotated[
        str | None, typer.Option("--precision", help="FP32, FP16 or INT8 (default triton.tensorrt_precision)")
    ] = None,
    namespace: Annotated[
        str, typer.Option("--namespace", help="Kubernetes namespace of the Job")
    ] = "tritium",
    claim: Annotated[
        str, typer.Option("--claim", help="PersistentVolumeClaim holding the model repository")
    ] = "model-repository",
) -> None:
    """Write a trtexec job (Compose service + Kubernetes Job) that builds MODEL's TensorRT engine on a GPU node."""
    from tritium.builder.engines import write_engine_job
    from tritium.builder.recipe import load_recipe
    from tritium.errors import RecipeError

    loaded = load_recipe(recipe)
    if loaded.recipe.name != model:
        raise RecipeError(
            f"{recipe} builds {loaded.recipe.name!r}, not {model!r}",
            hint="pass the recipe MODEL was built from",
        )
    if image is None:
        from tritium.serving.docker_runtime import DEFAULT_IMAGE

        image = DEFAULT_IMAGE
    job = write_engine_job(
        loaded,
        repository,
        output or Path("deploy") / "engines" / model,
        version=version,
        triton_image=image,
        precision=precision,
        namespace=namespace,
        claim=claim,
    )
    console = _console()
    console.print(
        f"engine job for {model} version {job.plan.version} → {job.plan.target}/1/model.plan ({job.plan.image})"
    )
    for profile in job.plan.profiles:
        console.print(
            f"  {profile.name}: min {list(profile.min)} opt {list(profile.opt)} max {list(profile.max)}"
        )
    console.print(f"compose: {job.compose}\nkubernetes: {job.kubernetes}\nconfig: {job.config}")


def register(app: typer.Typer, models_app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("engines")(engines)
    models_app.command("list")(models_list)
    models_app.command("show")(models_show)
