"""``onnx-fp16``: FP16 weights with FP32 inputs and outputs (onnxruntime's transformers converter)."""

from __future__ import annotations

from tritium.builder.artifacts import Artifact, Recorder, quiet_tool
from tritium.builder.context import BuildContext
from tritium.builder.steps.base import Job, Technique


class OnnxFp16(Technique):
    kind = "onnx-fp16"

    def produce(self, job: Job, ctx: BuildContext) -> Artifact:
        import onnx
        from onnxruntime.transformers.onnx_model import OnnxModel

        out = ctx.output(job.name, ".onnx")
        recorder = Recorder()
        params = {"keep_io_types": True, "tool": "onnxruntime.transformers"}
        with recorder.timed("convert-fp16", params), quiet_tool(ctx.work):
            # onnxconverter_common.float16 made MiniLM models onnxruntime refused to load
            # (float16/float mismatch on a Cast) and truncated LayerNorm's epsilon
            model = OnnxModel(onnx.load(str(job.parent.path)))
            model.convert_float_to_float16(keep_io_types=True)
            model.save_model_to_file(str(out))
        return Artifact(
            job.name, self.kind, out, self.platform, tuple(recorder.records), parent=job.parent.variant
        )
