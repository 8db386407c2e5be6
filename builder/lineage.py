"""``lineage.json``: where a version came from, as one typed record made once, with its version number.

The repository numbers versions while it holds its lock, so the pipeline hands it a
:class:`LineageDraft` and the repository calls :meth:`LineageDraft.complete` with the numbers:
the record is made once, complete, and written once.
"""

from __future__ import annotations

import platform
from contextlib import suppress
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

import tritium


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceRecord(_Record):
    kind: str
    files: list[str]
    sha256: str
    factory: str | None = None


class RecipeRecord(_Record):
    path: str
    sha256: str


class StepEntry(_Record):
    name: str
    params: dict
    seconds: float


class MetricRecord(_Record):
    name: str
    value: float
    baseline: float
    drop: float
    budget: float


class MachineRecord(_Record):
    platform: str
    processor: str
    threads: int | None
    device: str = "cpu"  # where the metrics and latencies were measured (profile.device; OpenVINO: cpu)


class ExclusionRecord(_Record):
    """A node the accuracy-control search kept in FP32, and the metrics on the search set after that."""

    node: str
    op_type: str
    proxy: float  # the cheap ranking score that nominated it
    metrics: dict[str, float]  # every scorable metric on the search set after this exclusion
    within_budget: bool


class AccuracyControlRecord(_Record):
    method: str  # "greedy-exclusion"
    search_set: str  # where the search scored: "validation hold-out (N samples)" or a dataset
    search_samples: int
    quantizable_nodes: int
    proxy: str
    candidates_confirmed: int  # how many candidates were confirmed on the metric per round
    max_excluded_nodes: int
    max_seconds: float | None
    baseline_metrics: dict[str, float]  # the FP32 baseline on the search set
    budgets: dict[str, float]
    higher_is_better: dict[str, bool]
    initial_metrics: dict[str, float]
    confirmations: list[ExclusionRecord]  # each top candidate excluded alone
    exclusions: list[ExclusionRecord]  # cumulative: the metrics after this node and every one before
    excluded_nodes: list[str]
    outcome: str  # "within-budget", "max-excluded-nodes", "time-limit", "no-candidates", "not-needed"
    seconds: float


class TrainingRecord(_Record):
    technique: str  # "qat-int8"
    loss: str | None
    dataset: str | None
    factory: str | None
    epochs: int
    learning_rate: float | None
    batch_size: int | None
    seed: int
    samples: int | None
    losses: list[float]  # mean loss per epoch
    seconds: float
    torch: str
    qconfig: dict
    data_sha256: str | None = None
    final_loss: float | None = None
    details: dict = {}  # technique-specific: the pruning schedule, distillation's teacher and control


class ModelStatsRecord(_Record):
    raw_bytes: int
    compressed_bytes: int | None  # None: the file was too large to compress within the build
    compressor: str
    parameters: int
    sparsity: float  # fraction of zeros among the weight tensors (2-D and up)


class Lineage(_Record):
    model: str
    version: int
    variant: str
    kind: str
    build_id: str
    created_at: str
    parent_version: int | None
    derived_from: str
    source: SourceRecord
    recipe: RecipeRecord
    steps: list[StepEntry]
    tools: dict[str, str]
    metric: MetricRecord
    checks: list[MetricRecord]
    size_bytes: int | None
    performance: dict | None
    baseline_latency: list[dict]
    latency: list[dict]
    machine: MachineRecord
    accuracy_control: AccuracyControlRecord | None = None
    training: TrainingRecord | None = None
    model_stats: ModelStatsRecord | None = None
    parent_chain: list[str] = []  # the variants this one was built on, source side first
    pruning: dict | None = None  # what rebuilds a structurally pruned model from the factory (the plan)

    def as_json(self) -> dict:
        """The JSON document: sections a technique did not add are left out, not written as null."""
        data = self.model_dump(mode="json")
        for optional in ("accuracy_control", "training", "model_stats", "pruning"):
            if data[optional] is None:
                del data[optional]
        return data


@dataclass(frozen=True)
class LineageDraft:
    """Everything a version's lineage holds except the numbers the repository gives it."""

    fields: dict

    def __post_init__(self) -> None:
        Lineage(**self.fields, version=1, parent_version=None)  # a wrong field fails here, before any write

    def complete(self, version: int, parent_version: int | None) -> dict:
        return Lineage(**self.fields, version=version, parent_version=parent_version).as_json()


def tool_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"tritium": tritium.__version__, "python": platform.python_version()}
    for package in ("torch", "onnx", "onnxruntime", "transformers", "openvino", "nncf"):
        with suppress(md.PackageNotFoundError):
            versions[package] = md.version(package)
    return versions


def machine(threads: int | None, device: str = "cpu") -> MachineRecord:
    return MachineRecord(
        platform=platform.platform(), processor=platform.machine(), threads=threads, device=device
    )


def draft(
    *,
    model: str,
    result,  # tritium.builder.results.VariantResult, accepted
    build_id: str,
    created_at: str,
    source,  # tritium.builder.sources.SourceModel
    loaded,  # tritium.builder.recipe.LoadedRecipe
    export_steps,  # the export artifact's StepRecords
    baseline_latency,
    threads: int | None,
    ancestors=(),  # the Artifacts this one was built on (parent first, then its parent, ...)
) -> LineageDraft:
    """The lineage of one accepted variant, but for its version numbers."""
    artifact = result.artifact
    chain = [*reversed(ancestors), artifact]
    decision = result.decision
    primary, *checks = decision.checks

    def metric(check) -> dict:
        return {
            "name": check.metric,
            "value": check.value,
            "baseline": check.baseline,
            "drop": check.drop,
            "budget": check.budget,
        }

    factory = loaded.recipe.source.factory if source.kind == "pytorch" else None
    # every step from the source: the export's (unless the chain starts from the source model), then
    # each ancestor's (a pruned model under an INT8 one), then the variant's own
    steps = [] if chain[0].parent == "source" else list(export_steps)
    for link in chain:
        steps += list(link.steps)
    fields = {
        "model": model,
        "variant": result.name,
        "kind": result.kind,
        "build_id": build_id,
        "created_at": created_at,
        "derived_from": artifact.parent,
        "source": {
            "kind": source.kind,
            "files": [str(p) for p in source.files],
            "sha256": source.sha256,
            "factory": factory,
        },
        "recipe": {"path": str(loaded.path), "sha256": loaded.sha256},
        "steps": [s.as_dict() for s in steps],
        "tools": tool_versions(),
        "metric": metric(primary),
        "checks": [metric(c) for c in checks],
        "size_bytes": result.size_bytes,
        "performance": result.performance.as_dict() if result.performance else None,
        "baseline_latency": [p.as_dict() for p in baseline_latency],
        "latency": [p.as_dict() for p in result.latency],
        # OpenVINO variants run on its CPU plugin whatever the build's device
        "machine": machine(
            threads, "cpu" if artifact.platform == "openvino" else loaded.recipe.profile.device
        ),
        "accuracy_control": artifact.accuracy_control.as_record() if artifact.accuracy_control else None,
        "training": artifact.training.as_record() if artifact.training else None,
        "model_stats": result.stats.as_dict() if result.stats else None,
        "parent_chain": [chain[0].parent] + [link.variant for link in chain[:-1]],
        "pruning": next((link.pruning for link in reversed(chain) if link.pruning), None),
    }
    return LineageDraft(fields)
