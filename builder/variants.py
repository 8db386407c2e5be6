"""Produce each variant a recipe asks for, from the verified ONNX export (or the torch model).

Each producer is a function from an input artifact to a new file in the build's work folder,
returning the steps it ran (name, parameters, seconds) for the lineage record.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tritium.builder.data import EvalSet
from tritium.builder.recipe import (
    CalibrationMethod,
    GraphOptimization,
    OnnxFp16Variant,
    OnnxFp32Variant,
    OnnxInt8DynamicVariant,
    OnnxInt8StaticVariant,
    Recipe,
    TorchScriptVariant,
)
from tritium.errors import DatasetError, ExportError, cause_text

ONNX_PLATFORM = "onnxruntime_onnx"
TORCHSCRIPT_PLATFORM = "pytorch_libtorch"


@dataclass(frozen=True)
class Step:
    name: str
    params: dict
    seconds: float

    def as_dict(self) -> dict:
        return {"name": self.name, "params": self.params, "seconds": round(self.seconds, 3)}


@dataclass
class Artifact:
    """A produced model file and how it was made."""

    variant: str
    kind: str
    path: Path
    platform: str
    steps: list[Step] = field(default_factory=list)
    parent: str | None = None  # the variant it was derived from

    @property
    def filename(self) -> str:
        return "model.pt" if self.platform == TORCHSCRIPT_PLATFORM else "model.onnx"

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


@contextmanager
def _timed(steps: list[Step], name: str, params: dict) -> Iterator[None]:
    start = time.perf_counter()
    yield
    steps.append(Step(name, params, time.perf_counter() - start))


@contextmanager
def _tool(work: Path) -> Iterator[None]:
    """Run one of onnxruntime's tools quietly, with the build's work folder as working directory.

    The tools log advice on the root logger (kept off the CLI), and some write files into the
    working directory: symbolic shape inference leaves ``sym_shape_infer_temp.onnx`` and its
    external data behind when it cannot finish. Nothing may appear where the user runs the build.
    """
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.chdir(work):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def optimize_fp32(source: Path, spec: OnnxFp32Variant, out: Path) -> list[Step]:
    steps: list[Step] = []
    params = {"optimization": spec.optimization.value}
    with _timed(steps, "ort-graph-optimization", params), _tool(out.parent):
        if spec.optimization is GraphOptimization.NONE:
            shutil.copyfile(source, out)
        elif spec.optimization is GraphOptimization.BASIC:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(out)
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        else:
            from onnxruntime.transformers.optimizer import optimize_model

            params.update(model_type=spec.model_type, num_heads=spec.num_heads, hidden_size=spec.hidden_size)
            optimized = optimize_model(
                str(source),
                model_type=spec.model_type,
                num_heads=spec.num_heads,
                hidden_size=spec.hidden_size,
            )
            fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
            params["fused_operators"] = fused
            optimized.save_model_to_file(str(out))
    return steps


def quantize_dynamic_int8(source: Path, spec: OnnxInt8DynamicVariant, out: Path) -> list[Step]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    steps: list[Step] = []
    params = {"per_channel": spec.per_channel, "reduce_range": spec.reduce_range, "weight_type": "QInt8"}
    with _timed(steps, "quantize-dynamic-int8", params), _tool(out.parent):
        quantize_dynamic(
            str(source),
            str(out),
            per_channel=spec.per_channel,
            reduce_range=spec.reduce_range,
            weight_type=QuantType.QInt8,
            # needed on ORT-optimized graphs ("Unable to find data type for weight_name")
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return steps


class _CalibrationReader:
    """Feeds calibration batches to onnxruntime's calibrators."""

    def __init__(self, calibration: EvalSet) -> None:
        self._batches = iter(calibration.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else batch.inputs


def quantize_static_int8(
    source: Path, spec: OnnxInt8StaticVariant, calibration: EvalSet, out: Path
) -> list[Step]:
    from onnxruntime.quantization import CalibrationMethod as OrtMethod
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    steps: list[Step] = []
    prepared = out.with_name(out.stem + ".pre.onnx")
    with _timed(steps, "quant-pre-process", {}), _tool(out.parent):
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
        except Exception as exc:  # seen on transformer graphs: continue without it, and say so
            steps_note = f"skipped: {cause_text(exc, 160)}"
            shutil.copyfile(source, prepared)
        else:
            steps_note = "ok"
    steps[-1].params["result"] = steps_note
    method = {
        CalibrationMethod.MINMAX: OrtMethod.MinMax,
        CalibrationMethod.ENTROPY: OrtMethod.Entropy,
        CalibrationMethod.PERCENTILE: OrtMethod.Percentile,
    }[spec.calibration.method]
    extra = {"CalibPercentile": spec.calibration.percentile} if method is OrtMethod.Percentile else {}
    params = {
        "format": "QDQ",
        "per_channel": spec.per_channel,
        "calibration_method": spec.calibration.method.value,
        "calibration_samples": calibration.samples,
        "activation_type": "QInt8",
        "weight_type": "QInt8",
        **({"percentile": spec.calibration.percentile} if extra else {}),
    }
    with _timed(steps, "quantize-static-int8", params), _tool(out.parent):
        try:
            quantize_static(
                str(prepared),
                str(out),
                _CalibrationReader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=spec.per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                extra_options=extra,
            )
        except Exception as exc:
            text = cause_text(exc)
            if "Got invalid dimensions" in text or "INVALID_ARGUMENT" in text:
                raise DatasetError(
                    f"calibration set does not fit the model: {text}",
                    hint="give calibration data with the recipe's input shapes",
                ) from None
            raise ExportError(f"static INT8 quantization failed: {text}") from None
    prepared.unlink(missing_ok=True)
    return steps


def convert_fp16(source: Path, spec: OnnxFp16Variant, out: Path) -> list[Step]:
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    steps: list[Step] = []
    params = {"keep_io_types": True, "tool": "onnxruntime.transformers"}
    with _timed(steps, "convert-fp16", params), _tool(out.parent):
        model = OnnxModel(onnx.load(str(source)))
        model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(out))
    return steps


def trace_torchscript(module, recipe: Recipe, spec: TorchScriptVariant, out: Path) -> list[Step]:
    import torch

    from tritium.builder.data import synthetic_inputs

    steps: list[Step] = []
    with _timed(steps, f"torchscript-{spec.method}", {"method": spec.method}), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.method == "script":
            scripted = torch.jit.script(module)
        else:
            dims = {k: v[0] for k, v in recipe.export.verify_dims.items() if v}
            example = synthetic_inputs(recipe.inputs, 2, dims, np.random.default_rng(0))
            with torch.inference_mode():
                scripted = torch.jit.trace(
                    module, tuple(torch.from_numpy(example[s.name]) for s in recipe.inputs), check_trace=False
                )
        scripted.save(str(out))
    return steps
