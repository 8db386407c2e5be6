"""Typed results of a build: each variant's status and scores, and the build as a whole.

Results are immutable: a variant's result is made once it is decided (and once more, with its
latency points, after profiling); the build's result is assembled after the repository commit,
with the versions the commit gave, and nothing writes into either afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from tritium.builder.artifacts import Artifact
from tritium.builder.gate import GateDecision
from tritium.builder.metrics import Score
from tritium.builder.model_stats import ModelStats
from tritium.builder.perf_gate import PerformanceDecision
from tritium.builder.profiling import LatencyPoint
from tritium.builder.recipe import LoadedRecipe


class VariantStatus(str, Enum):
    """Where a variant ended (the baseline row has its own status)."""

    BASELINE = "baseline"
    ACCEPTED = "accepted"  # within every budget and its objective: written
    REJECTED = "rejected"  # built, but over a budget or failing its objective: reported, not written
    FAILED = "failed"  # could not be built (the reason says why): reported, not written

    def __str__(self) -> str:  # reports and f-strings show "accepted", not "VariantStatus.ACCEPTED"
        return self.value


@dataclass(frozen=True)
class Evaluation:
    primary: Score
    checks: tuple[Score, ...]


@dataclass(frozen=True)
class VariantResult:
    name: str
    kind: str
    status: VariantStatus
    reason: str = ""
    evaluation: Evaluation | None = None
    decision: GateDecision | None = None
    performance: PerformanceDecision | None = None
    size_bytes: int | None = None
    latency: tuple[LatencyPoint, ...] = ()
    artifact: Artifact | None = None
    stats: ModelStats | None = None  # raw and compressed size, parameters, sparsity (ONNX variants)


@dataclass(frozen=True)
class VersionRef:
    """Where an accepted variant was written: Triton model name and version number."""

    model: str
    version: int


@dataclass(frozen=True)
class BuildResult:
    build_id: str
    recipe: LoadedRecipe
    output_dir: Path
    repository: Path
    baseline: VariantResult
    variants: tuple[VariantResult, ...]
    export_checks: list[dict]
    seconds: float = 0.0
    versions: dict[str, VersionRef] = field(default_factory=dict)  # variant name -> written version
    reports: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    validation: dict = field(default_factory=dict)  # what the gate scored (and what it held out)

    @property
    def accepted(self) -> list[VariantResult]:
        return [v for v in self.variants if v.status is VariantStatus.ACCEPTED]

    @property
    def failed(self) -> list[VariantResult]:
        return [v for v in self.variants if v.status is VariantStatus.FAILED]

    def version_of(self, name: str) -> VersionRef | None:
        return self.versions.get(name)

    @property
    def written(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for variant in self.accepted:
            ref = self.versions.get(variant.name)
            if ref is not None:
                out.setdefault(ref.model, []).append(ref.version)
        return out
