"""``onnx-int8-static``: INT8 weights and activations, calibrated (onnxruntime's quantize_static, QDQ)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tritium.builder.artifacts import Artifact, Recorder, quiet_tool
from tritium.builder.context import BuildContext
from tritium.builder.data import EvalSet
from tritium.builder.recipe import CalibrationMethod, OnnxInt8StaticVariant
from tritium.builder.steps.base import Job, Technique
from tritium.errors import DatasetError, ExportError, cause_text


class _CalibrationReader:
    """Feeds calibration batches to onnxruntime's calibrators."""

    def __init__(self, calibration: EvalSet) -> None:
        self._batches = iter(calibration.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else batch.inputs


def pre_process(source: Path, out: Path, work: Path, recorder: Recorder) -> Path:
    """onnxruntime's quant_pre_process (shape inference, folding); on failure continue without it, and say so."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with recorder.timed("quant-pre-process", {}) as params, quiet_tool(work):
        try:
            quant_pre_process(str(source), str(out), skip_symbolic_shape=False)
        except Exception as exc:  # seen on transformer graphs ("Incomplete symbolic shape inference")
            params["result"] = f"skipped: {cause_text(exc, 160)}"
            shutil.copyfile(source, out)
        else:
            params["result"] = "ok"
    return out


def quantize_static(
    prepared: Path,
    spec: OnnxInt8StaticVariant,
    calibration: EvalSet,
    out: Path,
    work: Path,
    exclude: tuple[str, ...] = (),
) -> dict:
    """Quantize ``prepared`` into ``out``; returns the parameters for the lineage."""
    from onnxruntime.quantization import CalibrationMethod as OrtMethod
    from onnxruntime.quantization import QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

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
    with quiet_tool(work):
        try:
            ort_quantize_static(
                str(prepared),
                str(out),
                _CalibrationReader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=spec.per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                nodes_to_exclude=list(exclude),
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
    return params


class OnnxInt8Static(Technique):
    kind = "onnx-int8-static"

    def produce(self, job: Job, ctx: BuildContext) -> Artifact:
        spec: OnnxInt8StaticVariant = job.variant
        recorder = Recorder()
        source = ctx.at_required_opset(job, recorder)
        out = ctx.output(job.name, ".onnx")
        prepared = pre_process(source, out.with_name(out.stem + ".pre.onnx"), ctx.work, recorder)
        calibration = ctx.calibration_set(spec.calibration)
        with recorder.timed("quantize-static-int8", {}) as params:
            params.update(quantize_static(prepared, spec, calibration, out, ctx.work))
        prepared.unlink(missing_ok=True)
        return Artifact(
            job.name, self.kind, out, self.platform, tuple(recorder.records), parent=job.parent.variant
        )
