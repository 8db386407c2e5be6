"""The performance rule applied to one variant that met the accuracy budget (see perf_gate for the measuring)."""

from __future__ import annotations

from collections.abc import Sequence

from tritium.builder.artifacts import Artifact
from tritium.builder.evaluation import runner_for
from tritium.builder.events import Task
from tritium.builder.model_stats import COMPRESSOR, compressed_size
from tritium.builder.perf_gate import PerformanceDecision, compare_latency, judge
from tritium.builder.recipe import Objective, Recipe
from tritium.builder.runners import OrtRunner, Runner


class PerformanceRule:
    """Judges each variant by its objective against the FP32 export (the export runner is made once)."""

    def __init__(self, recipe: Recipe, export: Artifact, batch_sizes: Sequence[int]) -> None:
        self.recipe = recipe
        self.export = export
        self.batch_sizes = list(batch_sizes)
        self._export_runner: Runner | None = None

    def judge(
        self, objective: Objective, artifact: Artifact, task: Task | None = None
    ) -> PerformanceDecision:
        settings = self.recipe.performance
        if objective is Objective.SIZE and artifact.judge_compressed:
            # unstructured sparsity leaves the raw file as large: both files compressed with xz
            return judge(
                objective,
                settings.tolerance,
                size_bytes=compressed_size(artifact.path),
                reference_size_bytes=compressed_size(self.export.path),
                size_measure=COMPRESSOR,
            )
        if objective is Objective.SIZE:
            return judge(
                objective,
                settings.tolerance,
                size_bytes=artifact.size_bytes,
                reference_size_bytes=self.export.size_bytes,
            )
        if objective is not Objective.LATENCY:
            return judge(objective, settings.tolerance)
        if self._export_runner is None:
            self._export_runner = OrtRunner(
                self.export.path,
                "fp32 export",
                settings.threads,
                spinning=False,
                device=self.recipe.profile.device,
            )
        if task is not None:
            sizes = ", ".join(map(str, self.batch_sizes))
            task.describe(f"variant {artifact.variant}: latency vs the FP32 export, batch {sizes}")
        comparisons = compare_latency(
            runner_for(artifact, self.recipe, threads=settings.threads, spinning=False),
            self._export_runner,
            self.recipe.inputs,
            self.batch_sizes,
            settings,
            self.recipe.profile.fixed_dims,
        )
        return judge(objective, settings.tolerance, comparisons)
