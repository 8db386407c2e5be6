"""Score a model on an evaluation set with the recipe's metrics, and decide against the budgets."""

from __future__ import annotations

from dataclasses import dataclass

from tritium.builder.artifacts import OPENVINO_PLATFORM, TORCHSCRIPT_PLATFORM, Artifact
from tritium.builder.data import EvalSet
from tritium.builder.gate import GateDecision, gate
from tritium.builder.metrics import LABELLED_METRICS, score
from tritium.builder.recipe import MetricName, Recipe
from tritium.builder.results import Evaluation
from tritium.builder.runners import (
    OpenVinoRunner,
    OrtRunner,
    Outputs,
    Runner,
    TorchRunner,
    default_threads,
    run_eval_set,
)


@dataclass(frozen=True)
class Reference:
    """An evaluation set and the baseline's outputs on it: what candidates are judged against."""

    eval_set: EvalSet
    outputs: Outputs


class Evaluator:
    """The recipe's metrics (primary + checks) and budgets, applied to any runner and set."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    def _metrics(self) -> list[tuple[MetricName, str, float]]:
        spec = self.recipe.validation
        default_output = self.recipe.outputs[0].name
        found = [(spec.metric, spec.output or default_output, self.recipe.budget)]
        found += [(c.metric, c.output or default_output, c.budget) for c in spec.checks]
        return found

    def evaluate(
        self, runner: Runner, eval_set: EvalSet, reference: Outputs | None
    ) -> tuple[Evaluation, Outputs]:
        """Every metric of the recipe on ``eval_set``; ``reference`` None: ``runner`` is the baseline."""
        outputs = run_eval_set(runner, eval_set)
        reference = reference if reference is not None else outputs
        scores = [score(m, outputs[o], eval_set.labels, reference[o]) for m, o, _ in self._metrics()]
        return Evaluation(scores[0], tuple(scores[1:])), outputs

    def decide(self, baseline: Evaluation, candidate: Evaluation) -> GateDecision:
        budgets = [budget for _, _, budget in self._metrics()]
        pairs = [(baseline.primary, candidate.primary, budgets[0])]
        pairs += list(zip(baseline.checks, candidate.checks, budgets[1:], strict=True))
        return gate(pairs)

    def scorable(self, eval_set: EvalSet) -> list[MetricName]:
        """The recipe's metrics this set can score: top1 and neighbor_top1 need labels."""
        labelled = eval_set.labels is not None
        return [m for m, _, _ in self._metrics() if labelled or m not in LABELLED_METRICS]

    def judge(self, runner: Runner, against: Reference) -> GateDecision:
        """``runner`` against the baseline on ``against``'s set, on every metric that set can score."""
        return self.decide_outputs(run_eval_set(runner, against.eval_set), against)

    def decide_outputs(self, outputs: Outputs, against: Reference) -> GateDecision:
        labels = against.eval_set.labels
        pairs = []
        for metric, output, budget in self._metrics():
            if labels is None and metric in LABELLED_METRICS:
                continue  # left to the gate, which scores a labelled set
            reference = against.outputs[output]
            pairs.append(
                (
                    score(metric, reference, labels, reference),
                    score(metric, outputs[output], labels, reference),
                    budget,
                )
            )
        return gate(pairs)


def runner_for(
    artifact: Artifact,
    recipe: Recipe,
    *,
    threads: int | None = None,
    spinning: bool = True,
    device: str | None = None,
) -> Runner:
    """A runner for an ONNX, TorchScript or OpenVINO artifact, on ``device`` (default the recipe's)."""
    device = device or recipe.profile.device
    if artifact.platform == OPENVINO_PLATFORM:
        # OpenVINO here is the CPU runtime; on a cuda build it is still judged where it runs
        return OpenVinoRunner(
            artifact.path,
            artifact.variant,
            threads or recipe.profile.threads,
            artifact.inference_precision,
            [o.name for o in recipe.outputs],
        )
    if artifact.platform == TORCHSCRIPT_PLATFORM:
        import torch

        module = torch.jit.load(str(artifact.path), map_location="cpu").eval()
        return TorchRunner(
            module,
            [s.name for s in recipe.inputs],
            [o.name for o in recipe.outputs],
            artifact.variant,
            # explicit: torch's thread count is global, a timing at one thread must not stick
            threads or recipe.profile.threads or default_threads(),
            device=device,
        )
    return OrtRunner(
        artifact.path, artifact.variant, threads or recipe.profile.threads, spinning=spinning, device=device
    )
