"""The build: baseline → export → variants → accuracy gate → performance rule → profile → repository → report.

Only :func:`tritium.builder.repository.write_versions` touches the model repository, and only after every
variant has been produced, validated and profiled.
"""

from __future__ import annotations

import platform
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

import tritium
from tritium.builder import export as exporting
from tritium.builder import normalize
from tritium.builder import variants as producing
from tritium.builder.advice import plan_warnings
from tritium.builder.data import EvalSet, load_dataset, synthetic_inputs
from tritium.builder.gate import GateDecision, gate
from tritium.builder.metrics import Score, score
from tritium.builder.perf_gate import PerformanceDecision, compare_latency, judge
from tritium.builder.profiling import LatencyPoint, default_batch_sizes, measure
from tritium.builder.recipe import (
    DType,
    LoadedRecipe,
    Objective,
    OnnxFp16Variant,
    OnnxFp32Variant,
    OnnxInt8DynamicVariant,
    OnnxInt8StaticVariant,
    Recipe,
    TorchScriptVariant,
    load_recipe,
    variant_name,
)
from tritium.builder.repository import ModelWrite, NewVersion, write_models
from tritium.builder.runners import OrtRunner, Outputs, Runner, TorchRunner, default_threads, run_eval_set
from tritium.builder.sources import SourceModel, load_source
from tritium.builder.triton_config import build_config, versions_to_serve
from tritium.errors import (
    BudgetError,
    ExportError,
    ModelSourceError,
    RecipeError,
    TritiumError,
    UserInputError,
    cause_text,
)
from tritium.extras import Extra, require

# Fail at import, in one line, where the builder's extra is missing (torch is checked when a
# PyTorch source needs it: an ONNX-only build never imports it).
require(Extra.builder, "onnx", "onnxruntime", what="the builder")

ACCEPTED, REJECTED, FAILED = "accepted", "rejected", "failed"


@dataclass
class Evaluation:
    primary: Score
    checks: list[Score]


@dataclass
class VariantResult:
    name: str
    kind: str
    status: str
    reason: str = ""
    evaluation: Evaluation | None = None
    decision: GateDecision | None = None
    performance: PerformanceDecision | None = None
    size_bytes: int | None = None
    latency: list[LatencyPoint] = field(default_factory=list)
    artifact: producing.Artifact | None = None
    model_name: str | None = None
    version: int | None = None


@dataclass
class BuildResult:
    build_id: str
    recipe: LoadedRecipe
    output_dir: Path
    repository: Path
    baseline: VariantResult
    variants: list[VariantResult]
    export_checks: list[dict]
    seconds: float = 0.0
    reports: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> list[VariantResult]:
        return [v for v in self.variants if v.status == ACCEPTED]

    @property
    def failed(self) -> list[VariantResult]:
        return [v for v in self.variants if v.status == FAILED]

    @property
    def written(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for v in self.accepted:
            if v.model_name and v.version is not None:
                out.setdefault(v.model_name, []).append(v.version)
        return out


def _tool_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"tritium": tritium.__version__, "python": platform.python_version()}
    for package in ("torch", "onnx", "onnxruntime", "transformers"):
        with suppress(md.PackageNotFoundError):
            versions[package] = md.version(package)
    return versions


def _check_plan(loaded: LoadedRecipe) -> None:
    recipe = loaded.recipe
    for index, variant in enumerate(recipe.variants):
        if isinstance(variant, TorchScriptVariant) and recipe.source.kind == "onnx":
            raise RecipeError(
                f"{loaded.path.name}: 'variants[{index}]': a torchscript variant needs a PyTorch source, "
                "this recipe's source is an ONNX file",
                hint="remove the variant or use a PyTorch source",
            )


def _output_types(onnx_path: Path) -> tuple[dict[str, DType], dict[str, list[int | str]]]:
    import onnx
    from onnx import helper

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    dtypes, shapes = {}, {}
    for output in graph.output:
        tensor = output.type.tensor_type
        try:
            dtypes[output.name] = DType.from_numpy(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        except (ValueError, KeyError, TypeError):
            raise ExportError(
                f"output {output.name!r} has element type {onnx.TensorProto.DataType.Name(tensor.elem_type)}, "
                "which Tritium cannot serve",
                hint="return a numeric or boolean tensor from the model",
            ) from None
        shapes[output.name] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "dynamic") for d in tensor.shape.dim
        ]
    return dtypes, shapes


class _Build:
    """One run of a recipe; holds the intermediate artifacts in a temporary work folder."""

    def __init__(self, loaded: LoadedRecipe, work: Path, console: Console, show_progress: bool) -> None:
        self.loaded = loaded
        self.recipe: Recipe = loaded.recipe
        self.work = work
        self.console = console
        self.show_progress = show_progress
        self.threads = self.recipe.profile.threads
        self._calibration_sets: dict[str, EvalSet] = {}
        self._converted: dict[tuple[Path, int], tuple[Path, producing.Step]] = {}
        self._export_runner: Runner | None = None

    # -- helpers ---------------------------------------------------------------------------
    @contextmanager
    def stage(self, text: str) -> Iterator[None]:
        start = time.perf_counter()
        if self.show_progress:
            with self.console.status(text):
                yield
            self.console.log(f"{text} [dim]{time.perf_counter() - start:.1f}s[/]")
        else:
            yield

    def progress(self) -> Progress:
        return Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.show_progress,
            transient=False,
        )

    def evaluate(
        self, runner: Runner, validation: EvalSet, reference: Outputs | None
    ) -> tuple[Evaluation, Outputs]:
        outputs = run_eval_set(runner, validation)
        reference = reference if reference is not None else outputs
        spec = self.recipe.validation
        default_output = self.recipe.outputs[0].name
        labels = validation.labels

        def one(metric, output):
            name = output or default_output
            return score(metric, outputs[name], labels, reference[name])

        return Evaluation(
            one(spec.metric, spec.output), [one(c.metric, c.output) for c in spec.checks]
        ), outputs

    def decide(self, baseline: Evaluation, candidate: Evaluation) -> GateDecision:
        pairs = [(baseline.primary, candidate.primary, self.recipe.budget)]
        pairs += [
            (b, c, check.budget)
            for b, c, check in zip(
                baseline.checks, candidate.checks, self.recipe.validation.checks, strict=True
            )
        ]
        return gate(pairs)

    def calibration_set(self, variant: OnnxInt8StaticVariant) -> EvalSet:
        key = variant.calibration.dataset.model_dump_json() + str(variant.calibration.samples)
        if key not in self._calibration_sets:
            self._calibration_sets[key] = load_dataset(
                self.loaded,
                variant.calibration.dataset,
                "calibration",
                max_samples=variant.calibration.samples,
            )
        return self._calibration_sets[key]

    def batch_sizes(self) -> list[int]:
        if not self.recipe.batch_axis:  # one call always takes the model's one shape
            return [self.recipe.fixed_batch or 1]
        if self.recipe.profile.batch_sizes:
            return self.recipe.profile.batch_sizes
        return default_batch_sizes(max(self.recipe.triton.max_batch_size, 1))

    def say(self, text: str) -> None:
        if self.show_progress:
            self.console.log(text)

    # -- steps -----------------------------------------------------------------------------
    def baseline_runner(self, source: SourceModel) -> Runner:
        names = [s.name for s in self.recipe.inputs]
        outputs = [o.name for o in self.recipe.outputs]
        if source.is_torch:
            return TorchRunner(source.module, names, outputs, "baseline", self.threads or default_threads())
        return OrtRunner(source.onnx_path, "baseline", self.threads)

    def check_model_accepts_inputs(self, runner: Runner, source: SourceModel) -> None:
        dims = {k: v[0] for k, v in self.recipe.export.verify_dims.items() if v}
        inputs = synthetic_inputs(
            self.recipe.inputs, 2 if self.recipe.batch_axis else 1, dims, np.random.default_rng(0)
        )
        try:
            produced = runner.run(inputs)
        except Exception as exc:
            shapes = ", ".join(f"{k}{list(v.shape)} {v.dtype}" for k, v in inputs.items())
            if source.is_torch:
                hint = (
                    "make the recipe's inputs (names, dtypes, shapes) match the model's forward() arguments"
                )
            else:
                hint = "make the recipe's inputs (names, dtypes, shapes) match the ONNX model's inputs"
            raise ModelSourceError(
                f"the model rejects inputs shaped like the recipe's 'inputs' ({shapes}): {cause_text(exc)}",
                hint=hint,
            ) from None
        missing = [o.name for o in self.recipe.outputs if o.name not in produced]
        if missing:
            raise ModelSourceError(
                f"the model produced {len(produced)} outputs, the recipe declares {[o.name for o in self.recipe.outputs]}",
                hint="declare one output per tensor the model returns",
            )

    def produce(
        self, variant, source: SourceModel, export_path: Path, fp32_base: tuple[str, Path] | None
    ) -> producing.Artifact:
        name = variant_name(variant)
        out = self.work / f"{name}.onnx"
        base_name, base_path = fp32_base if fp32_base else ("export", export_path)
        if isinstance(variant, OnnxFp32Variant):
            optimized = producing.optimize_fp32(export_path, variant, out)
            return producing.Artifact(name, variant.kind, out, producing.ONNX_PLATFORM, optimized)
        steps: list[producing.Step] = []
        needed = normalize.required_opset(variant)
        if needed is not None and normalize.model_opset(base_path) < needed:
            base_path, converted = self.at_opset(
                base_path, needed, needed_by=f"variant {name} ({variant.kind})"
            )
            steps.append(converted)
        if isinstance(variant, OnnxInt8DynamicVariant):
            steps += producing.quantize_dynamic_int8(base_path, variant, out)
        elif isinstance(variant, OnnxInt8StaticVariant):
            steps += producing.quantize_static_int8(base_path, variant, self.calibration_set(variant), out)
        elif isinstance(variant, OnnxFp16Variant):
            steps += producing.convert_fp16(base_path, variant, out)
        elif isinstance(variant, TorchScriptVariant):
            out = self.work / f"{name}.pt"
            steps = producing.trace_torchscript(source.module, self.recipe, variant, out)
            self.verify_torchscript(out, source)
            return producing.Artifact(name, variant.kind, out, producing.TORCHSCRIPT_PLATFORM, steps)
        else:  # pragma: no cover - the recipe schema admits no other kind
            raise AssertionError(variant)
        return producing.Artifact(
            name,
            variant.kind,
            out,
            producing.ONNX_PLATFORM,
            steps,
            parent=None if base_name == "export" else base_name,
        )

    def at_opset(self, path: Path, target: int, *, needed_by: str) -> tuple[Path, producing.Step]:
        """``path`` converted to opset ``target`` (once per build), and the step that did it."""
        key = (path, target)
        if key not in self._converted:
            out = self.work / f"{path.stem}.opset{target}.onnx"
            step = normalize.convert_opset(
                path, target, out, self.recipe, needed_by=needed_by, threads=self.threads
            )
            self._converted[key] = (out, step)
        return self._converted[key]

    def judge_performance(
        self, variant, artifact: producing.Artifact, export_path: Path, progress: Progress, task
    ) -> PerformanceDecision:
        """The performance rule for one variant that met the accuracy budget."""
        settings = self.recipe.performance
        objective: Objective = variant.objective
        if objective is Objective.SIZE:
            return judge(
                objective,
                settings.tolerance,
                size_bytes=artifact.size_bytes,
                reference_size_bytes=export_path.stat().st_size,
            )
        if objective is not Objective.LATENCY:
            return judge(objective, settings.tolerance)
        if self._export_runner is None:
            self._export_runner = OrtRunner(export_path, "fp32 export", settings.threads, spinning=False)
        sizes = self.batch_sizes()
        progress.update(
            task,
            description=f"variant {artifact.variant}: latency vs the FP32 export, batch {', '.join(map(str, sizes))}",
        )
        comparisons = compare_latency(
            self.runner_for(artifact, threads=settings.threads, spinning=False),
            self._export_runner,
            self.recipe.inputs,
            sizes,
            settings,
            self.recipe.profile.fixed_dims,
        )
        return judge(objective, settings.tolerance, comparisons)

    def runner_for(
        self, artifact: producing.Artifact, *, threads: int | None = None, spinning: bool = True
    ) -> Runner:
        if artifact.platform == producing.TORCHSCRIPT_PLATFORM:
            import torch

            module = torch.jit.load(str(artifact.path), map_location="cpu").eval()
            return TorchRunner(
                module,
                [s.name for s in self.recipe.inputs],
                [o.name for o in self.recipe.outputs],
                artifact.variant,
                # explicit: torch's thread count is global, a timing at one thread must not stick
                threads or self.threads or default_threads(),
            )
        return OrtRunner(artifact.path, artifact.variant, threads or self.threads, spinning=spinning)

    def verify_torchscript(self, path: Path, source: SourceModel) -> None:
        import torch

        runner = TorchRunner(
            torch.jit.load(str(path), map_location="cpu").eval(),
            [s.name for s in self.recipe.inputs],
            [o.name for o in self.recipe.outputs],
            "torchscript",
        )
        exporting.compare_runners(
            runner, self.baseline_runner(source), self.recipe, what="the TorchScript trace"
        )


def _lineage(
    build: _Build,
    build_id: str,
    source: SourceModel,
    result: VariantResult,
    baseline: VariantResult,
    export_steps: list[producing.Step],
    created_at: str,
) -> dict:
    artifact = result.artifact
    assert artifact is not None and result.evaluation is not None and result.decision is not None
    primary = result.decision.checks[0]
    return {
        "model": result.model_name,
        "version": None,
        "variant": result.name,
        "kind": result.kind,
        "build_id": build_id,
        "created_at": created_at,
        "parent_version": None,
        "derived_from": artifact.parent or "export",
        "source": {
            "kind": source.kind,
            "files": [str(p) for p in source.files],
            "sha256": source.sha256,
            **({"factory": build.recipe.source.factory} if source.kind == "pytorch" else {}),
        },
        "recipe": {"path": str(build.loaded.path), "sha256": build.loaded.sha256},
        "steps": [s.as_dict() for s in export_steps + artifact.steps],
        "tools": _tool_versions(),
        "metric": {
            "name": primary.metric,
            "value": primary.value,
            "baseline": primary.baseline,
            "drop": primary.drop,
            "budget": primary.budget,
        },
        "checks": [
            {"name": c.metric, "value": c.value, "baseline": c.baseline, "drop": c.drop, "budget": c.budget}
            for c in result.decision.checks[1:]
        ],
        "size_bytes": result.size_bytes,
        "performance": result.performance.as_dict() if result.performance else None,
        "baseline_latency": [p.as_dict() for p in baseline.latency],
        "latency": [p.as_dict() for p in result.latency],
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "threads": build.threads,
        },
    }


def build_recipe(
    recipe_path: Path | str,
    *,
    repository: Path | str = "model_repository",
    output_dir: Path | str | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> BuildResult:
    """Run a whole build. Raises a :class:`TritiumError` (repository untouched) on failure."""
    started = time.perf_counter()
    console = console or Console(stderr=True)
    loaded = load_recipe(recipe_path)
    recipe = loaded.recipe
    _check_plan(loaded)
    build_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    repository = Path(repository).resolve()
    output_dir = Path(output_dir or Path("builds") / recipe.name / build_id).resolve()

    with tempfile.TemporaryDirectory(prefix=f"tritium-{recipe.name}-") as tmp:
        build = _Build(loaded, Path(tmp), console, show_progress)

        with build.stage("loading the model and the validation set"):
            source = load_source(loaded)
            if not source.is_torch:  # the user's own graph: say which recipe field disagrees with it
                exporting.check_declared_axes(source.onnx_path, recipe, onnx_source=True)
            validation = load_dataset(loaded, recipe.validation.dataset, "validation")
            reference_runner = build.baseline_runner(source)
            build.check_model_accepts_inputs(reference_runner, source)

        with build.stage(
            f"baseline: {recipe.validation.metric.value} on {validation.samples} samples + latency"
        ):
            evaluation, reference = build.evaluate(reference_runner, validation, None)
            sizes = build.batch_sizes()
            baseline = VariantResult(
                f"baseline ({source.kind})", source.kind, "baseline", evaluation=evaluation
            )
            baseline.decision = build.decide(evaluation, evaluation)
            baseline.latency = [
                measure(reference_runner, recipe.inputs, b, recipe.profile)
                for b in (sorted({1, max(sizes)}) if recipe.batch_axis else sizes)
            ]
            baseline.size_bytes = source.size_bytes

        export_steps: list[producing.Step] = []
        export_checks: list[dict] = []
        export_stage = (
            "export to ONNX and verify at several shapes"
            if source.is_torch
            else "check the ONNX model (and normalize an old IR)"
        )
        with build.stage(export_stage):
            if source.is_torch:
                export_path = build.work / "export.onnx"
                t0 = time.perf_counter()
                exporting.export_onnx(source.module, recipe, export_path)
                exporting.check_declared_axes(export_path, recipe)
                export_checks = exporting.verify_against_source(
                    export_path, reference_runner, recipe, build.threads
                )
                export_steps.append(
                    producing.Step(
                        "export-onnx",
                        {
                            "exporter": "torch.onnx (TorchScript-based)",
                            "opset": recipe.export.opset,
                            "dynamic_axes": {s.name: s.dynamic_axes for s in recipe.inputs},
                            "verified_shapes": export_checks,
                        },
                        time.perf_counter() - t0,
                    )
                )
            else:
                normalized = normalize.normalize_onnx(
                    source.onnx_path, recipe, build.work / "normalized.onnx", build.threads
                )
                export_path = normalized.path
                export_steps.extend(normalized.steps)
            output_dtypes, output_shapes = _output_types(export_path)
        for step in export_steps:
            if step.name == normalize.NORMALIZE_STEP:
                build.say(
                    f"normalized {source.onnx_path.name}: {step.params['removed_initializer_inputs']} weights "
                    f"were listed as graph inputs (IR {step.params['ir_version']['from']}); "
                    f"IR {step.params['ir_version']['to']}, verified"
                )
        warnings_found = plan_warnings(export_path, recipe.variants)
        for warning in warnings_found:  # without progress output, the CLI prints them with the table
            build.say(f"[yellow]warning:[/] {escape(warning)}")

        results: list[VariantResult] = []
        fp32_base: tuple[str, Path] | None = None
        with build.progress() as progress:
            task = progress.add_task("variants", total=len(recipe.variants))
            for variant in recipe.variants:
                name = variant_name(variant)
                progress.update(task, description=f"variant {name}: producing + validating")
                result = VariantResult(name, variant.kind, FAILED)
                try:
                    artifact = build.produce(variant, source, export_path, fp32_base)
                    result.artifact = artifact
                    result.size_bytes = artifact.size_bytes
                    result.evaluation, _ = build.evaluate(build.runner_for(artifact), validation, reference)
                    result.decision = build.decide(evaluation, result.evaluation)
                    result.status = ACCEPTED if result.decision.accepted else REJECTED
                    result.reason = result.decision.reason
                    if result.status == ACCEPTED:  # the performance rule, for what met the budget
                        result.performance = build.judge_performance(
                            variant, artifact, export_path, progress, task
                        )
                        if not result.performance.accepted:
                            result.status, result.reason = REJECTED, result.performance.reason
                    if (
                        isinstance(variant, OnnxFp32Variant)
                        and fp32_base is None
                        and result.status == ACCEPTED
                    ):
                        fp32_base = (name, artifact.path)
                except UserInputError:
                    raise
                except TritiumError as exc:
                    result.reason = exc.one_line()
                except Exception as exc:
                    result.reason = cause_text(exc)
                results.append(result)
                if build.show_progress:  # without progress output, the CLI prints them with the table
                    _announce(progress.console, result)
                progress.advance(task)

            accepted = [r for r in results if r.status == ACCEPTED]
            sizes = build.batch_sizes()
            points = progress.add_task("profiling accepted variants", total=len(accepted) * len(sizes))
            for result in accepted:
                runner = build.runner_for(result.artifact)
                for batch_size in sizes:
                    progress.update(points, description=f"profiling {result.name} batch {batch_size}")
                    result.latency.append(measure(runner, recipe.inputs, batch_size, recipe.profile))
                    progress.advance(points)

        outcome = BuildResult(
            build_id,
            loaded,
            output_dir,
            repository,
            baseline,
            results,
            export_checks,
            warnings=warnings_found,
        )

        if not accepted:
            outcome.seconds = time.perf_counter() - started
            outcome.reports = _write_reports(outcome)
            summary = "; ".join(f"{r.name}: {r.status} ({r.reason})" for r in results)
            report = outcome.reports.get("markdown")
            if all(r.status == FAILED for r in results):
                raise ExportError(
                    f"every variant of {recipe.name!r} failed, nothing was written to {repository} — {summary}",
                    hint=f"fix the causes named for each variant, or ask for other variants; report: {report}",
                )
            raise BudgetError(
                f"no variant of {recipe.name!r} met the budget and its objective, nothing was written to "
                f"{repository} — {summary}",
                hint=f"relax 'budget' (or 'performance.tolerance') or try other variants; report: {report}",
            )

        with build.stage(f"writing versions to {repository}"):
            _write(build, outcome, source, export_steps, created_at, output_dtypes, output_shapes)

    outcome.seconds = time.perf_counter() - started
    outcome.reports = _write_reports(outcome)
    return outcome


def _announce(console: Console, result: VariantResult) -> None:
    """One console line per variant as it is decided: failures and rejections with their reason."""
    if result.status == ACCEPTED:
        console.log(f"[green]✓[/] variant {escape(result.name)} accepted")
        return
    style, verdict = ("red", "FAILED") if result.status == FAILED else ("yellow", "rejected")
    console.log(f"[{style}]✗ variant {escape(result.name)} {verdict}:[/] {escape(result.reason)}")


def _write_reports(outcome: BuildResult) -> dict[str, Path]:
    from tritium.builder import report as reporting

    try:
        return reporting.write_reports(outcome)
    except OSError as exc:
        raise UserInputError(
            f"cannot write the build report to {outcome.output_dir}: {exc.strerror or exc} "
            f"(versions written: {outcome.written or 'none'})",
            hint="pass a writable --output folder",
        ) from None


def _write(
    build: _Build,
    outcome: BuildResult,
    source: SourceModel,
    export_steps: list[producing.Step],
    created_at: str,
    output_dtypes: dict[str, DType],
    output_shapes: dict[str, list[int | str]],
) -> None:
    recipe = build.recipe
    groups: dict[str, list[VariantResult]] = {}
    for result in outcome.accepted:
        platform_name = result.artifact.platform
        result.model_name = (
            recipe.name if platform_name == producing.ONNX_PLATFORM else f"{recipe.name}_torchscript"
        )
        groups.setdefault(result.model_name, []).append(result)
    writes = []
    for model_name, members in groups.items():
        keys = {m.name for m in members}
        new = [
            NewVersion(
                model_file=m.artifact.path,
                filename=m.artifact.filename,
                lineage=_lineage(
                    build, outcome.build_id, source, m, outcome.baseline, export_steps, created_at
                ),
                parent_key=m.artifact.parent if m.artifact.parent in keys else None,
                key=m.name,
            )
            for m in members
        ]
        platform_name = members[0].artifact.platform

        def make_config(versions: list[int], model_name=model_name, platform_name=platform_name):
            return build_config(
                recipe,
                name=model_name,
                platform=platform_name,
                versions=versions_to_serve(versions, recipe.triton.serve_versions),
                output_dtypes=output_dtypes,
                output_shapes=output_shapes,
            )

        writes.append(ModelWrite(model_name, new, make_config))
    numbers = write_models(outcome.repository, writes)  # one transaction: every model lands, or none
    for model_name, members in groups.items():
        for member, number in zip(members, numbers[model_name], strict=True):
            member.version = number
