"""``torchscript``: the PyTorch model traced (or scripted) for Triton's libtorch backend, verified."""

from __future__ import annotations

import warnings

import numpy as np

from tritium.builder.artifacts import TORCHSCRIPT_PLATFORM, Artifact, Recorder
from tritium.builder.context import BuildContext
from tritium.builder.data import synthetic_inputs
from tritium.builder.recipe import Recipe, TorchScriptVariant
from tritium.builder.runners import TorchRunner
from tritium.builder.steps.base import Job, Parent, Technique


class TorchScript(Technique):
    kind = "torchscript"
    parent = Parent.SOURCE
    platform = TORCHSCRIPT_PLATFORM

    def recipe_error(self, variant, recipe: Recipe) -> str | None:
        if recipe.source.kind == "onnx":
            return "a torchscript variant needs a PyTorch source, this recipe's source is an ONNX file"
        return None

    def produce(self, job: Job, ctx: BuildContext) -> Artifact:
        import torch

        from tritium.builder.export import compare_runners

        spec: TorchScriptVariant = job.variant
        recipe = ctx.recipe
        module = ctx.source.module
        out = ctx.output(job.name, ".pt")
        recorder = Recorder()
        with recorder.timed(f"torchscript-{spec.method}", {"method": spec.method}), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if spec.method == "script":
                scripted = torch.jit.script(module)
            else:
                dims = {k: v[0] for k, v in recipe.export.verify_dims.items() if v}
                example = synthetic_inputs(recipe.inputs, 2, dims, np.random.default_rng(0))
                with torch.inference_mode():
                    scripted = torch.jit.trace(
                        module,
                        tuple(torch.from_numpy(example[s.name]) for s in recipe.inputs),
                        check_trace=False,
                    )
            scripted.save(str(out))
        runner = TorchRunner(
            torch.jit.load(str(out), map_location="cpu").eval(),
            [s.name for s in recipe.inputs],
            [o.name for o in recipe.outputs],
            "torchscript",
        )
        compare_runners(runner, ctx.baseline_runner, recipe, what="the TorchScript trace")
        return Artifact(job.name, self.kind, out, self.platform, tuple(recorder.records), parent="source")
