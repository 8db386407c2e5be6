"""The release record: what a release did, decided and measured — and where to resume it.

One JSON file per release (`releases/<model>/<id>.json`, written atomically after every phase)
and a markdown rendering beside it. `phase` is the last phase that completed: a release interrupted
at any point is resumed from the phase after it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tritium.errors import NotFoundError, UserInputError


class Strategy(str, Enum):
    CANARY = "canary"  # canary steps judged by the gateway's controller
    SHADOW_CANARY = "shadow-canary"  # mirrored first (answers compared, none exposed), then canary
    AB = "ab"  # a fixed split held for a window, judged with the A/B statistics


class Phase(str, Enum):
    """The phases in order; a release records the last one it completed."""

    STARTED = "started"
    BUILT = "built"
    LOADED = "loaded"
    VERIFIED = "verified"  # served parity with the validated artifact
    SHADOWED = "shadowed"
    EXPOSED = "exposed"  # canary steps or A/B window passed
    PROMOTED = "promoted"  # stable is the candidate; the previous version still loaded
    DONE = "done"  # grace period over, the previous version unloaded


class Outcome(str, Enum):
    IN_PROGRESS = "in_progress"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"  # exposed to traffic, then taken back
    STOPPED = "stopped"  # never exposed: parity or shadow said no
    FAILED = "failed"  # something broke; the route was restored


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phase: str
    at: float
    ok: bool
    reason: str
    evidence: dict = Field(default_factory=dict)


class ReleaseRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    model: str  # the public (route) name
    triton_model: str
    candidate_version: int
    previous_version: int | None = None  # what `stable` served when the release started
    strategy: Strategy
    gateway_url: str  # the first gateway (the only one, outside a fleet)
    triton_url: str  # the first Triton
    gateway_urls: list[str] = Field(default_factory=list)  # every gateway replica the release drives
    triton_urls: list[str] = Field(default_factory=list)  # every Triton replica (one shared repository)
    prometheus_url: str | None = None  # canary analysis from Prometheus instead of the gateways
    settings: dict = Field(default_factory=dict)
    started_at: float
    finished_at: float | None = None
    phase: Phase = Phase.STARTED
    outcome: Outcome = Outcome.IN_PROGRESS
    decisions: list[Decision] = Field(default_factory=list)
    timings_s: dict[str, float] = Field(default_factory=dict)

    @property
    def tritons(self) -> list[str]:
        return self.triton_urls or [self.triton_url]

    @property
    def gateways(self) -> list[str]:
        return self.gateway_urls or [self.gateway_url]

    def decide(self, phase: str, ok: bool, reason: str, **evidence: object) -> Decision:
        decision = Decision(phase=phase, at=time.time(), ok=ok, reason=reason, evidence=evidence)
        self.decisions.append(decision)
        return decision

    def to_markdown(self) -> str:
        def when(at: float | None) -> str:
            return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))

        lines = [
            f"# Release {self.id}: {self.model} version {self.candidate_version}",
            "",
            f"- outcome: **{self.outcome.value}** (last phase completed: {self.phase.value})",
            f"- strategy: {self.strategy.value}; previous stable version: {self.previous_version}",
            f"- Triton model {self.triton_model} at {', '.join(self.tritons)}; gateway(s) {', '.join(self.gateways)}",
            f"- canary analysis: {'Prometheus at ' + self.prometheus_url if self.prometheus_url else 'the gateways'}",
            f"- started {when(self.started_at)}, finished {when(self.finished_at)}",
            "",
            "| phase | time | ok | reason |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {d.phase} | {when(d.at)} | {'yes' if d.ok else 'no'} | {d.reason} |" for d in self.decisions
        ]
        if self.timings_s:
            lines += ["", "| phase | seconds |", "|---|---|"]
            lines += [f"| {phase} | {seconds:.1f} |" for phase, seconds in self.timings_s.items()]
        return "\n".join(lines) + "\n"


class ReleaseStore:
    """Release records under `root/<model>/<id>.json` (and `.md`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, model: str, release_id: str) -> Path:
        return self.root / model / f"{release_id}.json"

    def save(self, record: ReleaseRecord) -> Path:
        path = self.path(record.model, record.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, text in (
            (path, record.model_dump_json(indent=2)),
            (path.with_suffix(".md"), record.to_markdown()),
        ):
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return path

    def load(self, release_id: str) -> ReleaseRecord:
        found = sorted(self.root.glob(f"*/{release_id}.json")) if self.root.is_dir() else []
        if not found:
            raise NotFoundError(
                f"no release {release_id!r} under {self.root}", hint="see `tritium releases list`"
            )
        return self._read(found[0])

    def all(self, model: str | None = None) -> list[ReleaseRecord]:
        if not self.root.is_dir():
            return []
        pattern = f"{model}/*.json" if model else "*/*.json"
        return sorted((self._read(p) for p in self.root.glob(pattern)), key=lambda r: r.started_at)

    @staticmethod
    def _read(path: Path) -> ReleaseRecord:
        try:
            return ReleaseRecord.model_validate(json.loads(path.read_text()))
        except (ValueError, ValidationError) as exc:
            raise UserInputError(f"release record {path} is not readable: {str(exc)[:200]}") from None
