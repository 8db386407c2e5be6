"""Advice on a recipe's plan from the graph it will run on (warnings, never errors)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tritium.builder.recipe import OnnxInt8DynamicVariant, variant_name

_CONV_OPS = {"Conv", "ConvTranspose"}
_WEIGHT_OPS = _CONV_OPS | {"MatMul", "Gemm"}
CONV_HEAVY_SHARE = 0.5


def conv_weight_share(path: Path) -> float:
    """Share of the weights of Conv/ConvTranspose/MatMul/Gemm nodes that belong to convolutions."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    sizes = {t.name: _dims_size(t) for t in graph.initializer}
    conv = total = 0
    for node in graph.node:
        if node.op_type not in _WEIGHT_OPS:
            continue
        weights = sum(sizes.get(name, 0) for name in node.input[1:2])  # the weight operand
        total += weights
        if node.op_type in _CONV_OPS:
            conv += weights
    return conv / total if total else 0.0


def _dims_size(tensor) -> int:
    size = 1
    for dim in tensor.dims:
        size *= dim
    return size


def plan_warnings(path: Path, variants: Sequence[object]) -> list[str]:
    """Warn about dynamic INT8 on a conv-heavy model: it is slower than FP32 on CPUs."""
    dynamic = [variant_name(v) for v in variants if isinstance(v, OnnxInt8DynamicVariant)]
    if not dynamic:
        return []
    share = conv_weight_share(path)
    if share <= CONV_HEAVY_SHARE:
        return []
    return [
        f"dynamic INT8 ({', '.join(dynamic)}) on a conv-heavy model ({share:.0%} of the weights are in "
        "convolutions): onnxruntime has no fast ConvInteger kernels on CPUs, so expect it slower than FP32 "
        "(the latency rule rejects it then); use onnx-int8-static with a calibration set instead"
    ]
