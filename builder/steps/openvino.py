"""``openvino-fp32`` and ``openvino-int8``: the verified ONNX export converted to OpenVINO IR
(``model.xml`` + ``model.bin``) for Triton's OpenVINO backend; INT8 by NNCF's post-training
quantization on the recipe's calibration set.

Both start from the export, not from onnxruntime's optimized graph: OpenVINO fuses the graph
itself, and onnxruntime's fused operators (``com.microsoft`` Attention) are not ONNX it can read.
The IR keeps FP32 weights (``compress_to_fp16=False``): OpenVINO's default FP16 weights are a
different variant, and its precision on the CPU is the ``inference_precision`` the recipe asks for.
"""

from __future__ import annotations

from pathlib import Path

from tritium.builder.artifacts import OPENVINO_PLATFORM, Artifact, Recorder
from tritium.builder.context import BuildContext
from tritium.builder.data import EvalSet
from tritium.builder.recipe import OpenVinoFp32Variant, OpenVinoInt8Variant, OpenVinoPrecision
from tritium.builder.runners import OpenVinoRunner
from tritium.builder.steps.base import Job, Parent, Technique
from tritium.errors import ExportError, cause_text
from tritium.extras import Extra, MissingExtraError, require


def convert(source: Path, recorder: Recorder):
    """The ONNX file read by OpenVINO's converter, as an ``openvino.Model``."""
    import openvino as ov

    with recorder.timed(
        "convert-openvino-ir", {"tool": "openvino.convert_model", "openvino": ov.__version__}
    ):
        try:
            return ov.convert_model(str(source))
        except Exception as exc:
            raise ExportError(f"OpenVINO cannot convert the ONNX export: {cause_text(exc)}") from None


def save(model, out: Path) -> None:
    import openvino as ov

    ov.save_model(model, str(out), compress_to_fp16=False)


def _calibration_items(calibration: EvalSet, batched: bool) -> list[dict]:
    """One NNCF item per sample where the model takes batches (its statistics are per sample)."""
    items = []
    for batch in calibration.batches:
        if not batched:
            items.append(batch.inputs)
            continue
        for row in range(batch.size):
            items.append({name: array[row : row + 1] for name, array in batch.inputs.items()})
    return items


class _OpenVinoTechnique(Technique):
    parent = Parent.EXPORT
    platform = OPENVINO_PLATFORM

    modules: tuple[str, ...] = ("openvino",)

    def recipe_error(self, variant, recipe) -> str | None:
        precisions = {v.inference_precision for v in recipe.variants if v.kind.startswith("openvino-")}
        if len(precisions) > 1:
            # their versions share one Triton model, whose config holds one precision hint
            return (
                "the OpenVINO variants ask for different inference_precision values "
                f"({sorted(p.value for p in precisions)}); give them one, or build them from separate recipes"
            )
        return None

    def cannot_apply(self, variant, recipe) -> str | None:
        try:
            require(Extra.builder, *self.modules, what=f"the {variant.kind} variant")
        except MissingExtraError as exc:
            return exc.one_line()
        return None

    def finish(
        self, job: Job, ctx: BuildContext, out: Path, recorder: Recorder, precision: OpenVinoPrecision
    ):
        return Artifact(
            job.name,
            self.kind,
            out,
            self.platform,
            tuple(recorder.records),
            parent=job.parent.variant,
            inference_precision=precision.value,
        )


class OpenVinoFp32(_OpenVinoTechnique):
    kind = "openvino-fp32"

    def produce(self, job: Job, ctx: BuildContext) -> Artifact:
        from tritium.builder.export import compare_runners

        spec: OpenVinoFp32Variant = job.variant
        recorder = Recorder()
        out = ctx.output(job.name, ".xml")
        model = convert(job.parent.path, recorder)
        with recorder.timed(
            "save-ir", {"compress_to_fp16": False, "inference_precision": spec.inference_precision.value}
        ):
            save(model, out)
        if spec.inference_precision is OpenVinoPrecision.F32:
            # exact arithmetic must give the export's answers at every verified shape; bf16 is
            # left to the gate, which judges it on the task metric
            runner = OpenVinoRunner(out, job.name, ctx.threads, "f32", [o.name for o in ctx.recipe.outputs])
            compare_runners(
                runner,
                ctx.baseline_runner,
                ctx.recipe,
                what="the OpenVINO IR",
                hint="report the OpenVINO version",
            )
        return self.finish(job, ctx, out, recorder, spec.inference_precision)


class OpenVinoInt8(_OpenVinoTechnique):
    kind = "openvino-int8"
    modules = ("openvino", "nncf")

    def produce(self, job: Job, ctx: BuildContext) -> Artifact:
        import contextlib
        import io
        import logging

        import nncf

        spec: OpenVinoInt8Variant = job.variant
        recorder = Recorder()
        out = ctx.output(job.name, ".xml")
        model = convert(job.parent.path, recorder)
        calibration = ctx.calibration_set(spec.calibration)
        items = _calibration_items(calibration, ctx.recipe.batch_axis is not None)
        params = {
            "tool": "nncf.quantize",
            "nncf": nncf.__version__,
            "preset": spec.preset,
            "model_type": spec.model_type,
            "calibration_samples": calibration.samples,
            "subset_size": len(items),
            "inference_precision": spec.inference_precision.value,
            "smooth_quant": spec.smooth_quant,
        }
        advanced = {}
        if not spec.smooth_quant:
            from nncf.quantization.advanced_parameters import (
                AdvancedQuantizationParameters,
                AdvancedSmoothQuantParameters,
            )

            off = AdvancedSmoothQuantParameters(convolution=-1, matmul=-1)  # -1: NNCF's "skip"
            advanced["advanced_parameters"] = AdvancedQuantizationParameters(smooth_quant_alphas=off)
        nncf_logger = logging.getLogger("nncf")
        level = nncf_logger.level
        nncf_logger.setLevel(logging.ERROR)
        try:
            # its progress bars go to stdout and would draw over the build's own
            with recorder.timed("quantize-nncf-int8", params), contextlib.redirect_stdout(io.StringIO()):
                quantized = nncf.quantize(
                    model,
                    nncf.Dataset(items),
                    preset={
                        "mixed": nncf.QuantizationPreset.MIXED,
                        "performance": nncf.QuantizationPreset.PERFORMANCE,
                    }.get(spec.preset),
                    model_type=nncf.ModelType.TRANSFORMER if spec.model_type == "transformer" else None,
                    subset_size=len(items),
                    **advanced,
                )
                save(quantized, out)
        except Exception as exc:
            raise ExportError(f"NNCF INT8 quantization failed: {cause_text(exc)}") from None
        finally:
            nncf_logger.setLevel(level)
        return self.finish(job, ctx, out, recorder, spec.inference_precision)
