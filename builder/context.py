"""What a technique is given to work with: the recipe, the work folder, the models and the build's services."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tritium.builder import normalize
from tritium.builder.artifacts import Artifact, Recorder, StepRecord
from tritium.builder.data import EvalSet, load_dataset
from tritium.builder.evaluation import Evaluator, Reference
from tritium.builder.events import EventSink, Notice, Task
from tritium.builder.recipe import CalibrationSpec, Dataset, LoadedRecipe, Recipe
from tritium.builder.runners import Runner, run_eval_set
from tritium.builder.sources import SourceModel


@dataclass
class BuildContext:
    """One build's shared state. Techniques read it and call its helpers; they never write results."""

    loaded: LoadedRecipe
    work: Path
    source: SourceModel
    export: Artifact
    baseline_runner: Runner
    evaluator: Evaluator
    emit: EventSink
    held_out: Reference | None = None  # the part of the validation set the gate does not score
    gate: Reference | None = None  # the set the gate scores, with the baseline's outputs (never trained on)
    _calibration: dict[str, EvalSet] = field(default_factory=dict)
    _references: dict[str, Reference] = field(default_factory=dict)
    _converted: dict[tuple[Path, int], tuple[Path, StepRecord]] = field(default_factory=dict)

    @property
    def recipe(self) -> Recipe:
        return self.loaded.recipe

    @property
    def threads(self) -> int | None:
        return self.recipe.profile.threads

    def output(self, name: str, suffix: str) -> Path:
        return self.work / f"{name}{suffix}"

    def task(self, description: str, total: int | None) -> Task:
        return Task(self.emit, description, total)

    def say(self, text: str) -> None:
        self.emit(Notice(text))

    def calibration_set(self, spec: CalibrationSpec) -> EvalSet:
        key = spec.dataset.model_dump_json() + str(spec.samples)
        if key not in self._calibration:
            self._calibration[key] = load_dataset(
                self.loaded, spec.dataset, "calibration", max_samples=spec.samples
            )
        return self._calibration[key]

    def reference_on(self, dataset: Dataset | None, name: str) -> Reference:
        """A dataset with the baseline's outputs on it; ``None``: the validation split the gate holds out."""
        if dataset is None:
            assert self.held_out is not None, "the planner splits the validation set for this variant"
            return self.held_out
        key = dataset.model_dump_json()
        if key not in self._references:
            eval_set = load_dataset(self.loaded, dataset, name)
            self._references[key] = Reference(eval_set, run_eval_set(self.baseline_runner, eval_set))
        return self._references[key]

    def at_opset(self, path: Path, target: int, *, needed_by: str) -> tuple[Path, StepRecord]:
        """``path`` converted to opset ``target`` (once per build), and the record of the conversion."""
        key = (path, target)
        if key not in self._converted:
            out = self.work / f"{path.stem}.opset{target}.onnx"
            record = normalize.convert_opset(
                path, target, out, self.recipe, needed_by=needed_by, threads=self.threads
            )
            self._converted[key] = (out, record)
        return self._converted[key]

    def at_required_opset(self, job, recorder: Recorder) -> Path:
        """The job's parent model, converted first when the variant needs a newer opset than it has."""
        path = job.parent.path
        needed = normalize.required_opset(job.variant)
        if needed is not None and normalize.model_opset(path) < needed:
            path, record = self.at_opset(path, needed, needed_by=f"variant {job.name} ({job.variant.kind})")
            recorder.add(record)
        return path
