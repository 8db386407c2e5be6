"""What the techniques that change a PyTorch model and fine-tune it share (pruning, distillation):
whether they can apply, the training run, and the export of the trained module, verified against it."""

from __future__ import annotations

import time

from tritium.builder.artifacts import Recorder, StepRecord
from tritium.builder.context import BuildContext
from tritium.builder.recipe import Recipe
from tritium.builder.runners import TorchRunner, default_threads
from tritium.builder.training import TrainingSummary, fine_tune


def fraction_error(field: str, value: float, examples: str) -> str | None:
    """Why a fraction the recipe gives (a sparsity, an amount) cannot be used: it must lie in (0, 1)."""
    if 0 < value < 1:
        return None
    return f"{field} {value:g} is outside (0, 1): give a fraction such as {examples}"


def needs_torch_and_training(what: str, recipe: Recipe) -> str | None:
    """Why ``what`` cannot apply to this recipe: it needs a PyTorch source and a ``training`` section."""
    if recipe.source.kind != "pytorch":
        source = "an ONNX file" if recipe.source.kind == "onnx" else "a TorchScript file"
        return f"{what} changes and fine-tunes a PyTorch model; this recipe's source is {source} (use a pytorch source with a factory)"
    if recipe.training is None:
        return f"{what} fine-tunes: it needs the recipe's 'training' section (a dataset and a loss, or a factory with your own loop)"
    return None


def train(
    module,
    ctx: BuildContext,
    variant,
    technique: str,
    name: str,
    recorder: Recorder,
    epochs: int | None = None,
    **options,
) -> TrainingSummary:
    """Fine-tune ``module`` in place with the recipe's ``training`` (the variant's epochs/learning rate
    override it, ``epochs`` both), with a progress task, and record the run as a step."""
    import torch

    training = ctx.recipe.training
    assert training is not None  # the planner blocks the variant otherwise
    epochs = epochs or variant.epochs or training.epochs
    learning_rate = variant.learning_rate or training.learning_rate
    threads = torch.get_num_threads()
    with ctx.task(f"variant {name}: {technique}", epochs if training.factory is None else None) as task:
        summary = fine_tune(
            module,
            ctx.source.module.eval(),
            ctx.loaded,
            training,
            technique=technique,
            epochs=epochs,
            learning_rate=learning_rate,
            input_names=[s.name for s in ctx.recipe.inputs],
            output_names=[o.name for o in ctx.recipe.outputs],
            task=task,
            **options,
        )
    torch.set_num_threads(threads)  # a user's loop may change it; timings after must not inherit that
    recorder.add(
        StepRecord(
            technique,
            {
                "epochs": epochs,
                "learning_rate": learning_rate,
                "loss": training.loss.value if training.loss else None,
                "factory": training.factory,
                "losses": [float(f"{x:.6g}") for x in summary.losses],
            },
            summary.seconds,
        )
    )
    return summary


def export_trained(module, ctx: BuildContext, name: str, recorder: Recorder):
    """Export the trained module to ONNX with the recipe's axes and verify it against the module at
    every verification shape (the same checks as the build's export)."""
    from tritium.builder import export as exporting

    recipe = ctx.recipe
    module.eval()
    path = ctx.output(name, ".onnx")
    started = time.perf_counter()
    exporting.export_onnx(module, recipe, path)
    exporting.check_declared_axes(path, recipe)
    reference = TorchRunner(
        module,
        [s.name for s in recipe.inputs],
        [o.name for o in recipe.outputs],
        name,
        ctx.threads or default_threads(),
    )
    checks = exporting.verify_against_source(path, reference, recipe, ctx.threads)
    recorder.add(
        StepRecord(
            "export-onnx",
            {
                "exporter": "torch.onnx (TorchScript-based)",
                "opset": recipe.export.opset,
                "verified_against": "the fine-tuned torch model",
                "verified_shapes": checks,
            },
            time.perf_counter() - started,
        )
    )
    return path


def example_inputs(recipe: Recipe):
    """A small batch shaped like the recipe's inputs, as torch tensors (for tracing the model)."""
    import numpy as np
    import torch

    from tritium.builder.data import synthetic_inputs

    dims = {name: sizes[0] for name, sizes in recipe.export.verify_dims.items() if sizes}
    arrays = synthetic_inputs(recipe.inputs, 2 if recipe.batch_axis else 1, dims, np.random.default_rng(0))
    return tuple(torch.from_numpy(arrays[s.name]) for s in recipe.inputs)
