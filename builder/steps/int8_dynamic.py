"""``onnx-int8-dynamic``: INT8 weights, activations quantized at run time (onnxruntime's quantize_dynamic)."""

from __future__ import annotations

from pathlib import Path

from tritium.builder.artifacts import Artifact, Recorder, quiet_tool
from tritium.builder.context import BuildContext
from tritium.builder.recipe import OnnxInt8DynamicVariant
from tritium.builder.steps import controlled
from tritium.builder.steps.base import Job, Technique


def quantize_dynamic(
    source: Path, spec: OnnxInt8DynamicVariant, out: Path, work: Path, exclude: tuple[str, ...] = ()
) -> None:
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    with quiet_tool(work):
        ort_quantize_dynamic(
            str(source),
            str(out),
            per_channel=spec.per_channel,
            reduce_range=spec.reduce_range,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(exclude),
            # needed on ORT-optimized graphs ("Unable to find data type for weight_name")
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


class OnnxInt8Dynamic(Technique):
    kind = "onnx-int8-dynamic"

    def holds_out(self, variant: OnnxInt8DynamicVariant) -> bool:
        return variant.accuracy_control is not None and variant.accuracy_control.dataset is None

    def produce(self, job: Job, ctx: BuildContext) -> Artifact:
        spec: OnnxInt8DynamicVariant = job.variant
        recorder = Recorder()
        source = ctx.at_required_opset(job, recorder)
        out = ctx.output(job.name, ".onnx")
        params = {"per_channel": spec.per_channel, "reduce_range": spec.reduce_range, "weight_type": "QInt8"}
        if spec.accuracy_control is None:
            with recorder.timed("quantize-dynamic-int8", params):
                quantize_dynamic(source, spec, out, ctx.work)
            return Artifact(
                job.name, self.kind, out, self.platform, tuple(recorder.records), parent=job.parent.variant
            )
        source = controlled.named_parent(job, ctx, source)
        with recorder.timed("quantize-dynamic-int8", params):
            found, trace = controlled.search(
                job,
                ctx,
                source,
                spec.accuracy_control,
                lambda exclude, path: quantize_dynamic(source, spec, path, ctx.work, exclude),
                lambda one, path, _feeds: quantize_dynamic(one, spec, path, ctx.work),
                # the quantizer rewrites a Gemm as MatMul (+ Add) named "<gemm>_MatMul" before it
                # quantizes, so that is the name its exclusion list must hold
                lambda candidate: (
                    candidate.node + "_MatMul" if candidate.op_type == "Gemm" else candidate.node
                ),
            )
            found.replace(out)
            params.update(nodes_to_exclude=trace.excluded, accuracy_control=trace.result.outcome.value)
        return controlled.artifact(job, self.kind, out, recorder, trace)
