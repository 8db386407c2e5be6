"""Bring ONNX files from older exporters to what today's tools expect, and record how.

Two repairs, each made with the field's own tools, verified against the model it started from and
returned as a :class:`~tritium.builder.artifacts.StepRecord` for the lineage:

- **Weights listed as graph inputs.** IR versions < 4 required every initializer to also be a
  graph input. onnxruntime then treats the weights as overridable inputs: its optimizer cannot
  fold them ("Required inputs ['<weight>__SHAPE', ...]") and its quantizers refuse or skip them
  ("Expected <weight> to be an initializer"). :func:`normalize_onnx` raises the IR version to 4
  and drops them from the inputs with onnxruntime's ``remove_initializer_from_input`` tool.
- **Old opsets.** Per-axis QDQ (per-channel static INT8) needs opset 13; onnxruntime's quantizers
  need opset 10 and, below it, only relabel the opset import. :func:`required_opset` says what a
  variant needs and :func:`convert_opset` converts with ``onnx.version_converter``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tritium.builder.artifacts import StepRecord
from tritium.builder.recipe import OnnxInt8DynamicVariant, OnnxInt8StaticVariant, Recipe
from tritium.builder.runners import OrtRunner
from tritium.errors import ExportError, ModelSourceError, cause_text

NORMALIZE_STEP = "normalize-onnx"
CONVERT_OPSET_STEP = "convert-opset"

# Per-axis QuantizeLinear/DequantizeLinear (the `axis` attribute) arrived in opset 13.
PER_CHANNEL_QDQ_OPSET = 13
# onnxruntime's quantizers need opset >= 10 (QuantizeLinear); below 11 they rewrite the opset
# import to 11 without converting a node, so an older graph is converted here first.
QUANTIZATION_OPSET = 11


@dataclass(frozen=True)
class Normalized:
    """The model the build continues from (the source itself when nothing needed repair)."""

    path: Path
    steps: tuple[StepRecord, ...] = ()


def onnx_opset(model) -> int:
    """The default-domain opset a model imports."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def initializer_inputs(model) -> list[str]:
    """Names of initializers that are also listed as graph inputs (the IR < 4 convention)."""
    inputs = {i.name for i in model.graph.input}
    return [t.name for t in model.graph.initializer if t.name in inputs]


def _save(model, path: Path) -> None:
    import onnx

    # protobuf cannot serialize 2 GiB; such models keep their weights in a side file
    large = model.ByteSize() > (1 << 31) - (1 << 26)
    onnx.save_model(model, str(path), save_as_external_data=large, location=path.name + ".data")


def normalize_onnx(source: Path, recipe: Recipe, out: Path, threads: int | None = None) -> Normalized:
    """Drop initializers from the graph inputs (raising the IR version to 4) when a model lists them."""
    import onnx
    from onnxruntime.tools.remove_initializer_from_input import remove_initializer_from_input

    started = time.perf_counter()
    model = onnx.load(str(source))
    moved = initializer_inputs(model)
    if not moved:
        return Normalized(source)
    ir_before = model.ir_version
    # The tool refuses IR < 4, where listing initializers as inputs was mandatory; IR 4 made it
    # optional, and nothing else in IR 4 changes the meaning of an IR 3 graph.
    model.ir_version = max(model.ir_version, 4)
    remove_initializer_from_input(model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ModelSourceError(
            f"{source.name}: removing {len(moved)} weights from the graph inputs left an invalid model: "
            f"{cause_text(exc)}",
            hint="re-export the model with a current exporter",
        ) from None
    _save(model, out)
    verified = _verify(out, source, recipe, threads, what="the normalized model (weights no longer inputs)")
    params = {
        "removed_initializer_inputs": len(moved),
        "examples": moved[:3],
        "ir_version": {"from": ir_before, "to": model.ir_version},
        "tool": "onnxruntime.tools.remove_initializer_from_input",
        "verified_shapes": verified,
    }
    return Normalized(out, (StepRecord(NORMALIZE_STEP, params, time.perf_counter() - started),))


def required_opset(variant) -> int | None:
    """The lowest opset the step producing ``variant`` works at, or None when any opset does."""
    if isinstance(variant, OnnxInt8StaticVariant):
        return PER_CHANNEL_QDQ_OPSET if variant.per_channel else QUANTIZATION_OPSET
    if isinstance(variant, OnnxInt8DynamicVariant):
        return QUANTIZATION_OPSET
    return None


def model_opset(path: Path) -> int:
    import onnx

    return onnx_opset(onnx.load(str(path), load_external_data=False))


def convert_opset(
    source: Path, target: int, out: Path, recipe: Recipe, *, needed_by: str, threads: int | None = None
) -> StepRecord:
    """Convert ``source`` to opset ``target`` with onnx.version_converter and verify it against ``source``."""
    import onnx
    from onnx import helper, version_converter

    started = time.perf_counter()
    model = onnx.load(str(source))
    before = onnx_opset(model)
    advice = f"re-export the model at opset {target} or newer"
    try:
        converted = version_converter.convert_version(model, target)
        # the converter keeps the old IR version, which may be too old for the new opset
        converted.ir_version = max(
            converted.ir_version, helper.find_min_ir_version_for(converted.opset_import, ignore_unknown=True)
        )
        onnx.checker.check_model(converted, full_check=True)
    except Exception as exc:
        raise ExportError(
            f"{needed_by} needs opset {target}, the model has opset {before}, and onnx.version_converter "
            f"could not convert it: {cause_text(exc, 240)}",
            hint=advice,
        ) from None
    _save(converted, out)
    verified = _verify(out, source, recipe, threads, what=f"the model converted to opset {target}")
    params = {
        "from": before,
        "to": target,
        "needed_by": needed_by,
        "tool": "onnx.version_converter",
        "verified_shapes": verified,
    }
    return StepRecord(CONVERT_OPSET_STEP, params, time.perf_counter() - started)


def _verify(
    candidate: Path, reference: Path, recipe: Recipe, threads: int | None, *, what: str
) -> list[dict]:
    """Both models at the recipe's verification shapes: a repair must not change a single output."""
    from tritium.builder.export import compare_runners

    try:
        runner = OrtRunner(candidate, "repaired", threads)
    except Exception as exc:
        raise ExportError(f"onnxruntime cannot load {what}: {cause_text(exc)}") from None
    return compare_runners(
        runner,
        OrtRunner(reference, "original", threads),
        recipe,
        what=what,
        hint="re-export the model with a current exporter",
    )
