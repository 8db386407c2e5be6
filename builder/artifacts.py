"""What a build step leaves behind: a model file in the build's work folder and how it was made."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tritium.builder.steps.controlled import SearchTrace
    from tritium.builder.training import TrainingSummary

ONNX_PLATFORM = "onnxruntime_onnx"
TORCHSCRIPT_PLATFORM = "pytorch_libtorch"
# Triton names OpenVINO a backend, not a platform: configs say ``backend: "openvino"``
OPENVINO_PLATFORM = "openvino"

#: the file each platform's Triton backend loads from a version folder
MODEL_FILENAMES = {
    ONNX_PLATFORM: "model.onnx",
    TORCHSCRIPT_PLATFORM: "model.pt",
    OPENVINO_PLATFORM: "model.xml",
}
#: the Triton model each platform's versions are written to: ``<name><suffix>`` (a platform belongs
#: to a model, not to a version)
MODEL_SUFFIXES = {ONNX_PLATFORM: "", TORCHSCRIPT_PLATFORM: "_torchscript", OPENVINO_PLATFORM: "_openvino"}


@dataclass(frozen=True)
class StepRecord:
    """One tool run on the way to an artifact (name, parameters, seconds), as the lineage lists it."""

    name: str
    params: dict
    seconds: float

    def as_dict(self) -> dict:
        return {"name": self.name, "params": self.params, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Artifact:
    """A produced model file and how it was made.

    ``parent`` is the artifact it was derived from: ``"export"``, ``"source"`` (the torch model) or
    another variant's name. ``notes`` are facts the step found that a reader of a rejection needs
    (e.g. why an accuracy-control search stopped); ``accuracy_control`` and ``training`` are the
    typed records the lineage carries for techniques that searched or fine-tuned.
    """

    variant: str
    kind: str
    path: Path
    platform: str
    steps: tuple[StepRecord, ...] = ()
    parent: str = "export"
    notes: tuple[str, ...] = ()
    accuracy_control: SearchTrace | None = None
    training: TrainingSummary | None = None
    # a size objective judged on the xz-compressed file (unstructured sparsity shows only there)
    judge_compressed: bool = False
    # what rebuilds a structurally pruned model: factory + state dict, then this plan replayed
    pruning: dict | None = None
    inference_precision: str | None = None  # OpenVINO: the CPU plugin's precision hint ("f32", "auto")

    @property
    def filename(self) -> str:
        return MODEL_FILENAMES[self.platform]

    @property
    def companions(self) -> tuple[tuple[Path, str], ...]:
        """Files the model file needs beside it, with their names in a version folder (IR weights)."""
        if self.platform == OPENVINO_PLATFORM:
            return ((self.path.with_suffix(".bin"), "model.bin"),)
        return ()

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size + sum(path.stat().st_size for path, _ in self.companions)


@dataclass
class Recorder:
    """Collects the :class:`StepRecord` of each tool a step runs, timing each one."""

    records: list[StepRecord] = field(default_factory=list)

    @contextmanager
    def timed(self, name: str, params: dict) -> Iterator[dict]:
        """Time the block; the block may add to ``params`` (yielded) before the record is kept."""
        start = time.perf_counter()
        yield params
        self.records.append(StepRecord(name, params, time.perf_counter() - start))

    def add(self, record: StepRecord) -> None:
        self.records.append(record)


@contextmanager
def quiet_tool(work: Path) -> Iterator[None]:
    """Run one of onnxruntime's tools quietly, with the build's work folder as working directory.

    The tools log advice on the root logger (kept off the CLI), and some write files into the
    working directory: symbolic shape inference leaves ``sym_shape_infer_temp.onnx`` and its
    external data behind when it cannot finish. Nothing may appear where the user runs the build.
    """
    import onnxruntime as ort

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    # the sessions the tools open inside (calibration) log through onnxruntime's own default logger
    ort.set_default_logger_severity(3)
    try:
        with warnings.catch_warnings(), contextlib.chdir(work):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        ort.set_default_logger_severity(2)
