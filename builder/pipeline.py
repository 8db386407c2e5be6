"""The build: plan → baseline → export → each planned step (produce, gate, performance rule) →
profile → repository → report.

The plan (:mod:`tritium.builder.plan`) says what to build from what; each technique
(:mod:`tritium.builder.steps`) makes its model file; this module runs them in order, judges what
they make, and emits events (:mod:`tritium.builder.events`) that a terminal view or a test
collects. Only :func:`tritium.builder.repository.write_models` touches the model repository, and
only after every variant has been produced, validated and profiled.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.console import Console

from tritium.builder import export as exporting
from tritium.builder import lineage
from tritium.builder import report as reporting
from tritium.builder.advice import plan_warnings
from tritium.builder.artifacts import MODEL_SUFFIXES, ONNX_PLATFORM, Artifact
from tritium.builder.context import BuildContext
from tritium.builder.data import EvalSet, hold_out, load_dataset, synthetic_inputs
from tritium.builder.device import check_device, objective_on, with_device
from tritium.builder.evaluation import Evaluator, Reference, runner_for
from tritium.builder.events import (
    EventSink,
    Notice,
    NoticeLevel,
    StageFinished,
    StageStarted,
    Task,
    VariantFinished,
    VariantStarted,
    fan_out,
    ignore,
)
from tritium.builder.model_stats import ModelStats, onnx_stats
from tritium.builder.performance import PerformanceRule
from tritium.builder.plan import SOURCE, Plan, PlannedStep, plan_recipe
from tritium.builder.profiling import measure, profile_batch_sizes
from tritium.builder.recipe import LoadedRecipe, Recipe, load_recipe
from tritium.builder.repository import ModelWrite, NewVersion, write_models
from tritium.builder.results import BuildResult, Evaluation, VariantResult, VariantStatus, VersionRef
from tritium.builder.runners import OrtRunner, Outputs, Runner, TorchRunner, default_threads, run_eval_set
from tritium.builder.sources import SourceModel, load_source
from tritium.builder.steps import TECHNIQUES, Job
from tritium.builder.steps.export import EXPORT, ExportResult, describe, normalize_notice, run_export
from tritium.builder.triton_config import build_config, versions_to_serve
from tritium.errors import (
    BudgetError,
    ExportError,
    ModelSourceError,
    TritiumError,
    UserInputError,
    cause_text,
)
from tritium.extras import Extra, require

# Fail at import, in one line, where the builder's extra is missing (torch is checked when a
# PyTorch source needs it: an ONNX-only build never imports it).
require(Extra.builder, "onnx", "onnxruntime", what="the builder")

# The statuses, under the names callers used before they were an enum.
ACCEPTED, REJECTED, FAILED = VariantStatus.ACCEPTED, VariantStatus.REJECTED, VariantStatus.FAILED


def build_recipe(
    recipe_path: Path | str,
    *,
    repository: Path | str = "model_repository",
    output_dir: Path | str | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    on_event: EventSink | None = None,
    device: str | None = None,
) -> BuildResult:
    """Run a whole build. Raises a :class:`TritiumError` (repository untouched) on failure.

    ``show_progress`` draws the build's events on ``console`` (stderr by default); ``on_event``
    receives every event as well (or alone, without progress output). ``device`` ("cpu" or
    "cuda") overrides the recipe's ``profile.device``.
    """
    if not show_progress:
        return _Build(recipe_path, repository, output_dir, on_event or ignore, device).run()
    from tritium.builder.progress_view import RichProgress

    with RichProgress(console or Console(stderr=True, log_path=False)) as view:
        emit = fan_out(view, on_event) if on_event else view
        return _Build(recipe_path, repository, output_dir, emit, device).run()


@contextmanager
def _stage(emit: EventSink, stage: str, description: str) -> Iterator[None]:
    started = time.perf_counter()
    emit(StageStarted(stage, description))
    yield
    emit(StageFinished(stage, description, time.perf_counter() - started))


class _Build:
    """One run of a recipe; intermediate artifacts live in a temporary work folder."""

    def __init__(
        self, recipe_path, repository, output_dir, emit: EventSink, device: str | None = None
    ) -> None:
        self.started = time.perf_counter()
        self.emit = emit
        self.loaded: LoadedRecipe = with_device(load_recipe(recipe_path), device)
        self.recipe: Recipe = self.loaded.recipe
        # a GPU the machine lacks fails here, in one line, before anything is loaded or exported
        check_device(self.recipe.profile.device, needs_torch=self.recipe.source.kind != "onnx")
        self.plan: Plan = plan_recipe(self.loaded)
        now = datetime.now(timezone.utc)
        self.build_id = now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
        self.created_at = now.isoformat(timespec="seconds")
        self.repository = Path(repository).resolve()
        self.output_dir = Path(output_dir or Path("builds") / self.recipe.name / self.build_id).resolve()
        self.evaluator = Evaluator(self.recipe)
        self.threads = self.recipe.profile.threads

    def run(self) -> BuildResult:
        recipe = self.recipe
        with tempfile.TemporaryDirectory(prefix=f"tritium-{recipe.name}-") as tmp:
            work = Path(tmp)
            with _stage(self.emit, "loading", "loading the model and the validation set"):
                source = load_source(self.loaded)
                if not source.is_torch:  # the user's own graph: say which recipe field disagrees with it
                    exporting.check_declared_axes(source.onnx_path, recipe, onnx_source=True)
                validation = load_dataset(self.loaded, recipe.validation.dataset, "validation")
                gate_set, held_out_set = self.split(validation)
                reference_runner = self.baseline_runner(source)
                self.check_model_accepts_inputs(reference_runner, source)

            with _stage(
                self.emit,
                "baseline",
                f"baseline: {recipe.validation.metric.value} on {gate_set.samples} samples + latency",
            ):
                baseline, reference = self.baseline(reference_runner, gate_set, source)
                held_out = (
                    Reference(held_out_set, run_eval_set(reference_runner, held_out_set))
                    if held_out_set is not None
                    else None
                )

            with _stage(self.emit, "export", describe(source)):
                exported = run_export(self.loaded, source, reference_runner, work, self.threads)
            notice = normalize_notice(exported, source)
            if notice:
                self.emit(Notice(notice))
            warnings_found = plan_warnings(exported.artifact.path, recipe.variants)
            for warning in warnings_found:
                self.emit(Notice(warning, NoticeLevel.WARNING))

            ctx = BuildContext(
                self.loaded,
                work,
                source,
                exported.artifact,
                reference_runner,
                self.evaluator,
                self.emit,
                held_out=held_out,
                gate=Reference(gate_set, reference),
            )
            results = self.variants(ctx, baseline.evaluation, gate_set, reference)
            results = self.profile(ctx, results)
            validation_info = {
                "samples": validation.samples,
                "gate_samples": gate_set.samples,
                "held_out_for_search": held_out_set.samples if held_out_set is not None else 0,
            }
            outcome = BuildResult(
                self.build_id,
                self.loaded,
                self.output_dir,
                self.repository,
                baseline,
                tuple(results),
                list(exported.checks),
                warnings=warnings_found,
                validation=validation_info,
            )
            if not outcome.accepted:
                self.fail(outcome)
            with _stage(self.emit, "writing", f"writing versions to {self.repository}"):
                versions = self.write(outcome, source, exported)
        outcome = replace(outcome, versions=versions, seconds=time.perf_counter() - self.started)
        return replace(outcome, reports=_write_reports(outcome))

    # -- loading and the baseline ---------------------------------------------------------------
    def split(self, validation: EvalSet) -> tuple[EvalSet, EvalSet | None]:
        """The set the gate scores, and the part held out for searches that must not see it."""
        if not self.plan.holds_out:
            return validation, None
        gate_set, held_out = hold_out(validation, fixed_batch=self.recipe.fixed_batch)
        self.emit(
            Notice(
                f"validation: {held_out.samples} of {validation.samples} samples held out for the "
                f"accuracy-control search; the gate scores the other {gate_set.samples}"
            )
        )
        return gate_set, held_out

    def baseline_runner(self, source: SourceModel) -> Runner:
        names = [s.name for s in self.recipe.inputs]
        outputs = [o.name for o in self.recipe.outputs]
        if source.is_torch:
            return TorchRunner(
                source.module,
                names,
                outputs,
                "baseline",
                self.threads or default_threads(),
                self.recipe.profile.device,
            )
        return OrtRunner(source.onnx_path, "baseline", self.threads, device=self.recipe.profile.device)

    def check_model_accepts_inputs(self, runner: Runner, source: SourceModel) -> None:
        recipe = self.recipe
        dims = {k: v[0] for k, v in recipe.export.verify_dims.items() if v}
        inputs = synthetic_inputs(
            recipe.inputs, 2 if recipe.batch_axis else 1, dims, np.random.default_rng(0)
        )
        try:
            produced = runner.run(inputs)
        except Exception as exc:
            shapes = ", ".join(f"{k}{list(v.shape)} {v.dtype}" for k, v in inputs.items())
            what = "the model's forward() arguments" if source.is_torch else "the ONNX model's inputs"
            raise ModelSourceError(
                f"the model rejects inputs shaped like the recipe's 'inputs' ({shapes}): {cause_text(exc)}",
                hint=f"make the recipe's inputs (names, dtypes, shapes) match {what}",
            ) from None
        missing = [o.name for o in recipe.outputs if o.name not in produced]
        if missing:
            raise ModelSourceError(
                f"the model produced {len(produced)} outputs, the recipe declares {[o.name for o in recipe.outputs]}",
                hint="declare one output per tensor the model returns",
            )

    def batch_sizes(self) -> list[int]:
        return profile_batch_sizes(self.recipe)

    def baseline(
        self, runner: Runner, gate_set: EvalSet, source: SourceModel
    ) -> tuple[VariantResult, Outputs]:
        evaluation, reference = self.evaluator.evaluate(runner, gate_set, None)
        sizes = self.batch_sizes()
        latency = tuple(
            measure(runner, self.recipe.inputs, b, self.recipe.profile)
            for b in (sorted({1, max(sizes)}) if self.recipe.batch_axis else sizes)
        )
        result = VariantResult(
            f"baseline ({source.kind})",
            source.kind,
            VariantStatus.BASELINE,
            evaluation=evaluation,
            decision=self.evaluator.decide(evaluation, evaluation),
            size_bytes=source.size_bytes,
            latency=latency,
        )
        return result, reference

    # -- the planned steps -------------------------------------------------------------------
    def variants(
        self, ctx: BuildContext, baseline: Evaluation, gate_set: EvalSet, reference: Outputs
    ) -> list[VariantResult]:
        rule = PerformanceRule(self.recipe, ctx.export, self.batch_sizes())
        done: dict[str, VariantResult] = {}
        with (
            _stage(self.emit, "variants", "variants"),
            Task(self.emit, "variants", len(self.plan.steps)) as task,
        ):
            for step in self.plan.steps:
                if step.explicit_parent and done[step.parent].status is not VariantStatus.ACCEPTED:
                    step = replace(step, blocked=_parent_not_accepted(step, done[step.parent]))
                parent = self.parent_of(step, done, ctx)
                self.emit(VariantStarted(step.name, step.kind, parent.variant if parent else SOURCE))
                task.describe(f"variant {step.name}: producing + validating")
                result = self.one_variant(step, parent, ctx, baseline, gate_set, reference, rule, task)
                done[step.name] = result
                self.emit(VariantFinished(result.name, result.kind, result.status, result.reason))
                task.advance()
        return list(done.values())

    @staticmethod
    def parent_of(step: PlannedStep, done: dict[str, VariantResult], ctx: BuildContext) -> Artifact | None:
        if step.parent == SOURCE:
            return None
        if step.parent == EXPORT:
            return ctx.export
        parent = done[step.parent]
        if parent.artifact is not None and (parent.status is VariantStatus.ACCEPTED or step.blocked):
            return parent.artifact
        return ctx.export  # the planned fallback: never build on a graph that was turned down

    def one_variant(
        self,
        step: PlannedStep,
        parent: Artifact | None,
        ctx: BuildContext,
        baseline: Evaluation,
        gate_set: EvalSet,
        reference: Outputs,
        rule: PerformanceRule,
        task: Task,
    ) -> VariantResult:
        failed = VariantResult(step.name, step.kind, VariantStatus.FAILED)
        if step.blocked:
            return replace(failed, reason=step.blocked)
        try:
            artifact = TECHNIQUES[step.kind].produce(Job(step.name, step.variant, parent), ctx)
            runner = runner_for(artifact, self.recipe)
            evaluation, _ = self.evaluator.evaluate(runner, gate_set, reference)
            decision = self.evaluator.decide(baseline, evaluation)
            result = VariantResult(
                step.name,
                step.kind,
                VariantStatus.ACCEPTED,
                evaluation=evaluation,
                decision=decision,
                size_bytes=artifact.size_bytes,
                artifact=artifact,
                stats=_stats(artifact),
            )
            if not decision.accepted:
                reason = "; ".join((decision.reason, *artifact.notes))
                return replace(result, status=VariantStatus.REJECTED, reason=reason)
            performance = rule.judge(objective_on(step.variant, self.recipe.profile.device), artifact, task)
            result = replace(result, performance=performance)
            if not performance.accepted:
                return replace(result, status=VariantStatus.REJECTED, reason=performance.reason)
            return result
        except UserInputError:
            raise
        except TritiumError as exc:
            return replace(failed, reason=exc.one_line())
        except Exception as exc:
            return replace(failed, reason=cause_text(exc))

    def profile(self, ctx: BuildContext, results: list[VariantResult]) -> list[VariantResult]:
        accepted = [r for r in results if r.status is VariantStatus.ACCEPTED]
        sizes = self.batch_sizes()
        profiled = {}
        with (
            _stage(self.emit, "profiling", f"profiling {len(accepted)} accepted variants"),
            Task(self.emit, "profiling accepted variants", len(accepted) * len(sizes)) as task,
        ):
            for result in accepted:
                runner = runner_for(result.artifact, self.recipe)
                points = []
                for batch_size in sizes:
                    task.describe(f"profiling {result.name} batch {batch_size}")
                    points.append(measure(runner, self.recipe.inputs, batch_size, self.recipe.profile))
                    task.advance()
                profiled[result.name] = replace(result, latency=tuple(points))
        return [profiled.get(r.name, r) for r in results]

    # -- the end -----------------------------------------------------------------------------
    def fail(self, outcome: BuildResult) -> None:
        outcome = replace(outcome, seconds=time.perf_counter() - self.started)
        reports = _write_reports(outcome)
        summary = "; ".join(f"{r.name}: {r.status} ({r.reason})" for r in outcome.variants)
        report = reports.get("markdown")
        name, repository = self.recipe.name, self.repository
        if all(r.status is VariantStatus.FAILED for r in outcome.variants):
            raise ExportError(
                f"every variant of {name!r} failed, nothing was written to {repository} — {summary}",
                hint=f"fix the causes named for each variant, or ask for other variants; report: {report}",
            )
        raise BudgetError(
            f"no variant of {name!r} met the budget and its objective, nothing was written to "
            f"{repository} — {summary}",
            hint=f"relax 'budget' (or 'performance.tolerance') or try other variants; report: {report}",
        )

    def write(
        self, outcome: BuildResult, source: SourceModel, exported: ExportResult
    ) -> dict[str, VersionRef]:
        recipe = self.recipe
        groups: dict[str, list[VariantResult]] = {}
        for result in outcome.accepted:
            suffix = MODEL_SUFFIXES[result.artifact.platform]
            groups.setdefault(f"{recipe.name}{suffix}", []).append(result)
        writes = []
        for model_name, members in groups.items():
            keys = {m.name for m in members}
            new = [
                NewVersion(
                    model_file=m.artifact.path,
                    filename=m.artifact.filename,
                    companions=m.artifact.companions,
                    lineage=lineage.draft(
                        model=model_name,
                        result=m,
                        build_id=self.build_id,
                        created_at=self.created_at,
                        source=source,
                        loaded=self.loaded,
                        export_steps=exported.artifact.steps,
                        baseline_latency=outcome.baseline.latency,
                        threads=self.threads,
                        ancestors=_ancestors(m, outcome),
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
                    output_dtypes=exported.output_dtypes,
                    output_shapes=exported.output_shapes,
                )

            writes.append(ModelWrite(model_name, new, make_config))
        numbers = write_models(self.repository, writes)  # one transaction: every model lands, or none
        return {
            member.name: VersionRef(model_name, number)
            for model_name, members in groups.items()
            for member, number in zip(members, numbers[model_name], strict=True)
        }


def _ancestors(result: VariantResult, outcome: BuildResult) -> list[Artifact]:
    """The artifacts ``result`` was built on, its parent first (export and source excluded)."""
    by_name = {v.name: v for v in outcome.variants}
    found, parent = [], result.artifact.parent
    while parent in by_name and by_name[parent].artifact is not None:
        found.append(by_name[parent].artifact)
        parent = by_name[parent].artifact.parent
    return found


def _stats(artifact: Artifact) -> ModelStats | None:
    if artifact.platform != ONNX_PLATFORM:
        return None
    return onnx_stats(artifact.path, compress=True if artifact.judge_compressed else None)


def _parent_not_accepted(step: PlannedStep, parent: VariantResult) -> str:
    return (
        f"its parent {parent.name} was {parent.status}"
        + (f" ({parent.reason})" if parent.reason else "")
        + ": nothing is built on a model the build turned down"
    )


def _write_reports(outcome: BuildResult) -> dict[str, Path]:
    try:
        return reporting.write_reports(outcome)
    except OSError as exc:
        raise UserInputError(
            f"cannot write the build report to {outcome.output_dir}: {exc.strerror or exc} "
            f"(versions written: {outcome.written or 'none'})",
            hint="pass a writable --output folder",
        ) from None
