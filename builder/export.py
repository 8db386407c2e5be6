"""Export to ONNX with the declared dynamic axes, and prove the export at several shapes.

Exporters can silently fix a dynamic dim (pytorch#148886): the graph is checked for the declared
symbolic axes, then run in onnxruntime at several batch sizes and sequence lengths and compared
with the source model. Any mismatch fails the build with the shape that broke.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np

from tritium.builder.data import synthetic_inputs
from tritium.builder.recipe import Recipe
from tritium.builder.runners import OrtRunner, Runner
from tritium.errors import ExportError, ModelSourceError, cause_text


def export_onnx(module, recipe: Recipe, path: Path) -> Path:
    """Export a torch module with the legacy TorchScript-based exporter (fast, single file)."""
    import torch

    specs = recipe.inputs
    example = synthetic_inputs(specs, batch=2, dims=_first_dims(recipe), rng=np.random.default_rng(0))
    args = tuple(torch.from_numpy(example[s.name]) for s in specs)
    dynamic_axes = {s.name: s.dynamic_axes for s in specs if s.dynamic_axes}
    batch_axis = recipe.batch_axis
    if batch_axis:
        for output in recipe.outputs:
            dynamic_axes.setdefault(output.name, {0: batch_axis})
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=[s.name for s in specs],
                output_names=[o.name for o in recipe.outputs],
                dynamic_axes=dynamic_axes,
                opset_version=recipe.export.opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:
        message = " ".join(str(exc).split())
        operator = _unsupported_operator(message)
        if operator:
            raise ExportError(
                f"ONNX export failed: operator {operator} is not supported at opset {recipe.export.opset}",
                hint="raise export.opset in the recipe, or replace that operation in the model",
            ) from None
        raise ExportError(f"ONNX export failed: {cause_text(exc)}") from None
    check_onnx(path)
    return path


def _unsupported_operator(message: str) -> str | None:
    import re

    match = re.search(r"operator '?([\w:.]+)'? to ONNX opset", message)
    return match.group(1) if match else None


def check_onnx(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"{path.name} fails onnx.checker: {cause_text(exc)}") from None


def _shape_text(value_info) -> str:
    dims = value_info.type.tensor_type.shape.dim
    return (
        "["
        + ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
        + "]"
    )


def check_declared_axes(path: Path, recipe: Recipe, *, onnx_source: bool = False) -> None:
    """The graph must take the recipe's inputs with the declared ranks, fixed sizes and dynamic axes.

    ``onnx_source``: the file is the user's own ONNX model (not our export), so a mismatch is the
    recipe's to fix and the hints say how.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    by_name = {i.name: i for i in graph.input if i.name not in initializers}
    error = ModelSourceError if onnx_source else ExportError
    graph_inputs = ", ".join(f"{name}{_shape_text(vi)}" for name, vi in by_name.items())
    for spec in recipe.inputs:
        if spec.name not in by_name:
            raise error(
                f"the {'ONNX model' if onnx_source else 'exported model'} has no input {spec.name!r} "
                f"(its inputs: {graph_inputs})",
                hint="name the recipe's inputs like the ONNX model's inputs"
                if onnx_source
                else "make the recipe's inputs match the model's forward() arguments",
            )
        dims = by_name[spec.name].type.tensor_type.shape.dim
        if len(dims) != len(spec.shape):
            raise error(
                f"input {spec.name!r}: the model takes rank {len(dims)} {_shape_text(by_name[spec.name])}, "
                f"the recipe declares {spec.shape}",
                hint="fix the input's shape in the recipe",
            )
        for axis, (declared, dim) in enumerate(zip(spec.shape, dims, strict=True)):
            if isinstance(declared, str) and dim.HasField("dim_value"):
                if onnx_source:
                    fixed = [
                        d.dim_value if d.HasField("dim_value") else s
                        for d, s in zip(dims, spec.shape, strict=True)
                    ]
                    batch = (
                        " (a model with a fixed first dim is served with max_batch_size 0)"
                        if axis == 0
                        else ""
                    )
                    raise error(
                        f"the ONNX model fixes axis {axis} of input {spec.name!r} to {dim.dim_value}, the recipe "
                        f"declares it dynamic ({declared!r})",
                        hint=f"declare shape {fixed} in the recipe{batch}, or re-export the model with that "
                        "axis dynamic",
                    )
                raise error(
                    f"the export fixed dynamic axis {declared!r} (input {spec.name!r}, axis {axis}) to "
                    f"{dim.dim_value}",
                    hint="the model's code turns that size into a constant; avoid shape-dependent Python logic",
                )
            if isinstance(declared, int) and dim.HasField("dim_value") and dim.dim_value != declared:
                raise error(
                    f"input {spec.name!r} axis {axis}: the model has size {dim.dim_value}, the recipe declares "
                    f"{declared}",
                    hint="fix the input's shape in the recipe",
                )


def _first_dims(recipe: Recipe) -> dict[str, int]:
    return {name: sizes[0] for name, sizes in recipe.export.verify_dims.items() if sizes}


def verification_shapes(recipe: Recipe) -> list[tuple[int, dict[str, int]]]:
    """Every batch size crossed with every declared size of each dynamic non-batch axis."""
    axes = sorted({d for s in recipe.inputs for i, d in enumerate(s.shape) if isinstance(d, str) and i > 0})
    sizes = [recipe.export.verify_dims.get(axis, [5, 16]) for axis in axes]
    first = recipe.inputs[0].shape[0]
    # without batching the first axis is the model's own: its fixed size, or one sample if dynamic
    batches = (
        recipe.export.verify_batch_sizes if recipe.batch_axis else [first if isinstance(first, int) else 1]
    )
    if recipe.triton.max_batch_size:
        batches = [b for b in batches if b <= recipe.triton.max_batch_size] or [1]
    return [
        (batch, dict(zip(axes, combo, strict=True)))
        for batch in batches
        for combo in itertools.product(*sizes)
    ]


def verify_against_source(
    path: Path, reference: Runner, recipe: Recipe, threads: int | None = None
) -> list[dict]:
    """Run the ONNX model and the source at several shapes; raise on the first mismatch."""
    try:
        candidate = OrtRunner(path, "onnx", threads)
    except Exception as exc:
        raise ExportError(f"onnxruntime cannot load the export: {cause_text(exc)}") from None
    return compare_runners(candidate, reference, recipe, what="the ONNX export")


def compare_runners(
    candidate: Runner, reference: Runner, recipe: Recipe, *, what: str, hint: str | None = None
) -> list[dict]:
    """Run both at every verification shape; raise on the first shape or value mismatch.

    ``hint`` replaces the export-specific hints when ``candidate`` is not an export.
    """
    rng = np.random.default_rng(1234)
    results = []
    for batch, dims in verification_shapes(recipe):
        inputs = synthetic_inputs(recipe.inputs, batch, dims, rng)
        shape_text = f"batch={batch}" + "".join(f", {k}={v}" for k, v in dims.items())
        try:
            got = candidate.run(inputs)
        except Exception as exc:
            raise ExportError(
                f"{what} fails at {shape_text}: {cause_text(exc)}",
                hint=hint or "the exporter fixed a dimension the recipe declares dynamic",
            ) from None
        want = reference.run(inputs)
        worst = 0.0
        for name, expected in want.items():
            actual = got[name]
            if actual.shape != expected.shape:
                raise ExportError(
                    f"{what} gives {name!r} shape {list(actual.shape)} at {shape_text}, the source "
                    f"gives {list(expected.shape)}",
                    hint=hint or "the exporter fixed a dimension the recipe declares dynamic",
                )
            error = float(
                np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64)), initial=0.0)
            )
            if not np.allclose(actual, expected, atol=recipe.export.atol, rtol=recipe.export.rtol):
                raise ExportError(
                    f"{what} differs from the source at {shape_text}: max abs error {error:.3g} on "
                    f"{name!r} (atol {recipe.export.atol})",
                    hint=hint or "check for training-mode layers or data-dependent control flow",
                )
            worst = max(worst, error)
        results.append({"batch": batch, **dims, "max_abs_error": worst})
    return results
