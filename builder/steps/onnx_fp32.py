"""``onnx-fp32``: the export through onnxruntime's graph optimizer (basic level, or the transformer fusions)."""

from __future__ import annotations

import shutil

from tritium.builder.artifacts import Artifact, Recorder, quiet_tool
from tritium.builder.context import BuildContext
from tritium.builder.recipe import GraphOptimization, OnnxFp32Variant
from tritium.builder.steps.base import Job, Parent, Technique


class OnnxFp32(Technique):
    kind = "onnx-fp32"
    parent = Parent.EXPORT

    def produce(self, job: Job, ctx: BuildContext) -> Artifact:
        spec: OnnxFp32Variant = job.variant
        source = job.parent.path
        out = ctx.output(job.name, ".onnx")
        recorder = Recorder()
        params = {"optimization": spec.optimization.value}
        with recorder.timed("ort-graph-optimization", params), quiet_tool(ctx.work):
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

                params.update(
                    model_type=spec.model_type, num_heads=spec.num_heads, hidden_size=spec.hidden_size
                )
                optimized = optimize_model(
                    str(source),
                    model_type=spec.model_type,
                    num_heads=spec.num_heads,
                    hidden_size=spec.hidden_size,
                )
                params["fused_operators"] = {
                    k: v for k, v in optimized.get_fused_operator_statistics().items() if v
                }
                optimized.save_model_to_file(str(out))
        return Artifact(
            job.name, self.kind, out, self.platform, tuple(recorder.records), parent=job.parent.variant
        )
