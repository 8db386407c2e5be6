"""Accuracy-controlled quantization, shared by the INT8 techniques: quantize, and when the result is
over budget on the search set, keep the most damaging nodes in FP32 (see tritium.builder.accuracy_control)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path

from tritium.builder import sensitivity
from tritium.builder.accuracy_control import Outcome, SearchResult, Trial, greedy_exclusion
from tritium.builder.artifacts import ONNX_PLATFORM, Artifact, Recorder
from tritium.builder.context import BuildContext
from tritium.builder.lineage import AccuracyControlRecord
from tritium.builder.recipe import AccuracyControl
from tritium.builder.runners import OrtRunner
from tritium.builder.sensitivity import Candidate
from tritium.builder.steps.base import Job
from tritium.errors import DatasetError, ExportError

PROXY = "output error of each weighted node quantized alone, on its FP32 inputs (relative, per output channel, averaged)"


@dataclass(frozen=True)
class SearchTrace:
    """What the search did, for the lineage, the report and a rejection's reason."""

    settings: AccuracyControl
    search_set: str
    search_samples: int
    candidates: tuple[Candidate, ...]
    result: SearchResult
    seconds: float

    @property
    def excluded(self) -> list[str]:
        return [e.candidate.node for e in self.result.exclusions]

    def as_record(self) -> AccuracyControlRecord:
        result = self.result

        def trial_record(candidate: Candidate, trial: Trial) -> dict:
            return {
                "node": candidate.node,
                "op_type": candidate.op_type,
                "proxy": round(candidate.proxy, 6),
                "metrics": trial.metrics(),
                "within_budget": trial.within_budget,
            }

        return AccuracyControlRecord(
            method="greedy-exclusion",
            search_set=self.search_set,
            search_samples=self.search_samples,
            quantizable_nodes=len(self.candidates),
            proxy=PROXY,
            candidates_confirmed=len(result.confirmed),
            max_excluded_nodes=self.settings.max_excluded_nodes,
            max_seconds=self.settings.max_seconds,
            baseline_metrics={c.metric: c.baseline for c in result.initial.decision.checks},
            budgets={c.metric: c.budget for c in result.initial.decision.checks},
            higher_is_better={c.metric: c.higher_is_better for c in result.initial.decision.checks},
            initial_metrics=result.initial.metrics(),
            confirmations=[trial_record(c, t) for c, t in result.confirmed],
            exclusions=[trial_record(e.candidate, e.trial) for e in result.exclusions],
            excluded_nodes=self.excluded,
            outcome=result.outcome.value,
            seconds=round(self.seconds, 2),
        )

    def note(self) -> str | None:
        """One sentence for a rejection: why the search stopped short of the budget."""
        outcome = self.result.outcome
        excluded = len(self.result.exclusions)
        where = f"on the search set ({self.search_set})"
        if outcome is Outcome.MAX_EXCLUDED:
            return (
                f"accuracy control stopped at max_excluded_nodes ({self.settings.max_excluded_nodes} nodes kept "
                f"in FP32), still over budget {where}"
            )
        if outcome is Outcome.TIME_LIMIT:
            return (
                f"accuracy control hit its time limit (max_seconds {self.settings.max_seconds:g}) after "
                f"{excluded} exclusions, still over budget {where}"
            )
        if outcome is Outcome.NO_CANDIDATES:
            return (
                f"accuracy control ran out of candidates: with all {excluded} quantized weighted nodes kept in "
                f"FP32 it is still over budget {where}"
            )
        if outcome in (Outcome.WITHIN_BUDGET, Outcome.NOT_NEEDED):
            return f"within budget {where} after {excluded} exclusions, not on the gate's samples"
        return None


# (nodes to exclude, output path) -> None: the variant's own quantizer
QuantizeFull = Callable[[tuple[str, ...], Path], None]


def named_parent(job: Job, ctx: BuildContext, source: Path) -> Path:
    """``source``, or a copy whose unnamed nodes got names (exclusion lists need node names)."""
    import onnx

    model = onnx.load(str(source))
    if not sensitivity.name_nodes(model):
        return source
    out = ctx.output(f"{job.name}.named", ".onnx")
    onnx.save_model(model, str(out))
    return out


def search(
    job: Job,
    ctx: BuildContext,
    source: Path,
    settings: AccuracyControl,
    quantize_full: QuantizeFull,
    quantize_one: sensitivity.QuantizeOne,
    exclusion_name: Callable[[Candidate], str] = lambda c: c.node,
) -> tuple[Path, SearchTrace]:
    """Quantize ``source``; if it is over budget on the search set, exclude nodes until it is not."""
    import onnx

    started = time.perf_counter()
    deadline = time.monotonic() + settings.max_seconds if settings.max_seconds else None
    if not sensitivity.weighted_nodes(onnx.load(str(source), load_external_data=False)):
        raise ExportError(
            f"variant {job.name}: nothing to quantize: the model has no {'/'.join(sensitivity.WEIGHT_INPUT)} "
            "node with weights",
            hint="remove the variant; INT8 quantization has no weights to make smaller here",
        )
    reference = ctx.reference_on(settings.dataset, "accuracy-control")
    if not ctx.evaluator.scorable(reference.eval_set):
        metrics = [
            ctx.recipe.validation.metric.value,
            *(c.metric.value for c in ctx.recipe.validation.checks),
        ]
        raise DatasetError(
            f"variant {job.name}: accuracy_control.dataset has no labels, and every metric the recipe "
            f"gates on ({', '.join(metrics)}) needs them: the search would have nothing to score",
            hint="add labels to that dataset, or leave accuracy_control.dataset out to search on validation "
            "samples held out from the gate",
        )
    search_set = (
        f"{reference.eval_set.samples} validation samples held out from the gate"
        if settings.dataset is None
        else f"accuracy_control.dataset, {reference.eval_set.samples} samples"
    )
    numbers = count()

    def trial(excluded: tuple[str, ...]) -> Trial:
        out = ctx.output(f"{job.name}.trial{next(numbers)}", ".onnx")
        names = tuple(exclusion_name(by_node[n]) for n in excluded) if excluded else ()
        quantize_full(names, out)
        runner = OrtRunner(out, job.name, ctx.threads)
        return Trial(excluded, out, ctx.evaluator.judge(runner, reference))

    by_node: dict[str, Candidate] = {}
    initial = trial(())
    candidates: list[Candidate] = []
    if not initial.within_budget:
        nodes = len(sensitivity.weighted_nodes(onnx.load(str(source), load_external_data=False)))
        with ctx.task(f"variant {job.name}: sensitivity of {nodes} nodes", nodes) as task:
            ranked = sensitivity.rank(
                source, reference.eval_set, quantize_one, ctx.work, threads=ctx.threads, task=task
            )
        candidates = [c for c in ranked if c.proxy > 0]  # 0: the quantizer left the node as it was
        by_node.update({c.node: c for c in candidates})
    total = min(settings.confirm, len(candidates)) + settings.max_excluded_nodes
    with ctx.task(f"variant {job.name}: accuracy control", total if candidates else None) as task:

        def counted(excluded: tuple[str, ...]) -> Trial:
            task.advance(description=f"variant {job.name}: accuracy control, {len(excluded)} excluded")
            return trial(excluded)

        result = greedy_exclusion(
            initial,
            candidates,
            counted,
            max_excluded=settings.max_excluded_nodes,
            confirm=settings.confirm,
            deadline=deadline,
            discard=lambda t: t.path.unlink(missing_ok=True),
        )
    if result.final is not initial:
        initial.path.unlink(missing_ok=True)
    trace = SearchTrace(
        settings,
        search_set,
        reference.eval_set.samples,
        tuple(candidates),
        result,
        time.perf_counter() - started,
    )
    return result.final.path, trace


def artifact(job: Job, kind: str, out: Path, recorder: Recorder, trace: SearchTrace) -> Artifact:
    note = trace.note()
    return Artifact(
        job.name,
        kind,
        out,
        ONNX_PLATFORM,
        tuple(recorder.records),
        parent=job.parent.variant,
        notes=(note,) if note else (),
        accuracy_control=trace,
    )
