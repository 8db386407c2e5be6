"""``onnx-int8-static``: INT8 weights and activations, calibrated (onnxruntime's quantize_static, QDQ)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tritium.builder.artifacts import Artifact, Recorder, quiet_tool
from tritium.builder.context import BuildContext
from tritium.builder.data import EvalSet
from tritium.builder.recipe import CalibrationMethod, OnnxInt8StaticVariant
from tritium.builder.steps import controlled
from tritium.builder.steps.base import Job, Technique
from tritium.errors import DatasetError, ExportError, cause_text


class _CalibrationReader:
    """Feeds calibration batches (an EvalSet, or input dicts) to onnxruntime's calibrators."""

    def __init__(self, calibration: EvalSet | list[dict[str, np.ndarray]]) -> None:
        feeds = [b.inputs for b in calibration.batches] if isinstance(calibration, EvalSet) else calibration
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


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
    calibration: EvalSet | list[dict[str, np.ndarray]],
    out: Path,
    work: Path,
    exclude: tuple[str, ...] = (),
    cache: Path | None = None,
) -> dict:
    """Quantize ``prepared`` into ``out``; returns the parameters for the lineage.

    ``cache``: where onnxruntime keeps the calibrated ranges, so that the accuracy-control search
    calibrates once and each of its trials only re-quantizes.
    """
    from onnxruntime.quantization import CalibrationMethod as OrtMethod
    from onnxruntime.quantization import QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    method = {
        CalibrationMethod.MINMAX: OrtMethod.MinMax,
        CalibrationMethod.ENTROPY: OrtMethod.Entropy,
        CalibrationMethod.PERCENTILE: OrtMethod.Percentile,
    }[spec.calibration.method]
    extra = {"CalibPercentile": spec.calibration.percentile} if method is OrtMethod.Percentile else {}
    samples = calibration.samples if isinstance(calibration, EvalSet) else None
    params = {
        "format": "QDQ",
        "per_channel": spec.per_channel,
        "calibration_method": spec.calibration.method.value,
        "calibration_samples": samples,
        "activation_type": "QInt8",
        "weight_type": "QInt8",
        **({"percentile": spec.calibration.percentile} if extra else {}),
        **({"op_types": spec.op_types} if spec.op_types else {}),
        "matmul_const_b_only": True,
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
                op_types_to_quantize=spec.op_types,
                nodes_to_exclude=list(exclude),
                # activation x activation products (attention scores) keep FP32: their ranges
                # change with every input, and one calibrated scale fits them badly
                extra_options={**extra, "MatMulConstBOnly": True},
                calibration_cache_path=cache,
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

    def holds_out(self, variant: OnnxInt8StaticVariant) -> bool:
        return variant.accuracy_control is not None and variant.accuracy_control.dataset is None

    def produce(self, job: Job, ctx: BuildContext) -> Artifact:
        spec: OnnxInt8StaticVariant = job.variant
        recorder = Recorder()
        source = ctx.at_required_opset(job, recorder)
        out = ctx.output(job.name, ".onnx")
        prepared = pre_process(source, out.with_name(out.stem + ".pre.onnx"), ctx.work, recorder)
        calibration = ctx.calibration_set(spec.calibration)
        if spec.accuracy_control is None:
            with recorder.timed("quantize-static-int8", {}) as params:
                params.update(quantize_static(prepared, spec, calibration, out, ctx.work))
            prepared.unlink(missing_ok=True)
            return Artifact(
                job.name, self.kind, out, self.platform, tuple(recorder.records), parent=job.parent.variant
            )
        named = controlled.named_parent(job, ctx, prepared)
        cache = ctx.output(f"{job.name}.calibration", ".json")
        with recorder.timed("quantize-static-int8", {}) as params:
            found, trace = controlled.search(
                job,
                ctx,
                named,
                spec.accuracy_control,
                lambda exclude, path: params.update(
                    quantize_static(named, spec, calibration, path, ctx.work, exclude, cache)
                ),
                # the one-node model is calibrated on the inputs that node saw in the FP32 model
                lambda one, path, feeds: quantize_static(one, spec, feeds, path, ctx.work),
            )
            found.replace(out)
            params.update(nodes_to_exclude=trace.excluded, accuracy_control=trace.result.outcome.value)
        for leftover in (prepared, named, cache):
            leftover.unlink(missing_ok=True)
        return controlled.artifact(job, self.kind, out, recorder, trace)
