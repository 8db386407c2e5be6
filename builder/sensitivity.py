"""How much quantizing each node alone would cost: a cheap proxy for ranking accuracy-control candidates.

Scoring the task metric with each node quantized alone costs one quantization of the whole model
and one validation run per node. The proxy here costs one FP32 run: it records the inputs every
weighted node sees in the FP32 model, then quantizes each node *as a one-node model*, with the
same quantizer and settings as the variant, and measures the error of its output on those
inputs: for each output channel ‖y_int8 − y_fp32‖ / ‖y_fp32‖, averaged over the channels (a
channel far larger than the others must not hide the damage to the rest). The node the quantizer
damages most is the first to try keeping in FP32; the search confirms the top candidates on the
metric itself. On minilm this proxy ranked the 36 MatMuls like the metric did (Spearman 0.81, the
same five on top), see docs/benchmarks.md and benchmarks/sensitivity_proxy.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritium.builder.data import EvalSet
from tritium.builder.events import Task

# Nodes that carry weights, and which of their inputs is the weight: the quantizers' main targets,
# and the ones whose exclusion keeps FP32 weights (the size each exclusion costs).
WEIGHT_INPUT = {"MatMul": 1, "Gemm": 1, "Conv": 1, "ConvTranspose": 1, "Gather": 0}

# (one-node model in, quantized model out, the node's FP32 inputs per batch) -> None
QuantizeOne = Callable[[Path, Path, list[dict[str, np.ndarray]]], None]


@dataclass(frozen=True)
class Candidate:
    node: str
    op_type: str
    proxy: float  # relative output error of the node quantized alone (0 = not quantized at all)
    weight_bytes: int


def name_nodes(model) -> bool:
    """Give every unnamed node a unique name (exclusion lists name nodes); True when any was renamed."""
    used = {n.name for n in model.graph.node if n.name}
    renamed = False
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
            renamed = True
    return renamed


def weighted_nodes(model) -> list:
    """Nodes of the weighted op types whose weight input is an initializer."""
    initializers = {t.name for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        index = WEIGHT_INPUT.get(node.op_type)
        if index is not None and len(node.input) > index and node.input[index] in initializers:
            found.append(node)
    return found


def _capture(
    model, path: Path, tensors: Sequence[str], batches, threads: int | None
) -> list[dict[str, np.ndarray]]:
    """Run the FP32 model once per batch with ``tensors`` added as outputs; each batch's values."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    graph_inputs = {i.name for i in probe.graph.input}
    for name in tensors:
        if name not in existing and name not in graph_inputs:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    onnx.save_model(probe, str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = [n for n in tensors if n not in graph_inputs]
    captured = []
    for batch in batches:
        values = dict(zip(wanted, session.run(wanted, batch.inputs), strict=True))
        values.update({n: batch.inputs[n] for n in tensors if n in graph_inputs})
        captured.append(values)
    path.unlink(missing_ok=True)
    return captured


def _one_node_model(model, node, captured: dict[str, np.ndarray]):
    """A model holding ``node`` alone: its initializers, its other inputs as graph inputs."""
    import onnx
    from onnx import helper

    initializers = {t.name: t for t in model.graph.initializer}
    inputs, weights = [], []
    for name in node.input:
        if not name:
            continue
        if name in initializers:
            weights.append(initializers[name])
        else:
            value = captured[name]
            dims = [None] * value.ndim
            inputs.append(
                helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), dims)
            )
    output = node.output[0]
    value = captured[output]
    outputs = [
        helper.make_tensor_value_info(
            output, helper.np_dtype_to_tensor_dtype(value.dtype), [None] * value.ndim
        )
    ]
    graph = helper.make_graph([node], "one_node", inputs, outputs, initializer=weights)
    single = helper.make_model(graph, opset_imports=list(model.opset_import))
    single.ir_version = model.ir_version
    onnx.checker.check_model(single)
    return single


def rank(
    model_path: Path,
    eval_set: EvalSet,
    quantize_one: QuantizeOne,
    work: Path,
    *,
    threads: int | None = None,
    max_samples: int = 32,
    task: Task | None = None,
) -> list[Candidate]:
    """Every weighted node of ``model_path``, most damaged by quantization first."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    nodes = weighted_nodes(model)
    if not nodes:
        return []
    batches, seen = [], 0
    for batch in eval_set.batches:
        if seen >= max_samples:
            break
        batches.append(batch)
        seen += batch.size
    initializers = {t.name: t for t in model.graph.initializer}
    tensors = sorted(
        {n for node in nodes for n in [*node.input, node.output[0]] if n and n not in initializers}
    )
    captured = _capture(model, work / "sensitivity.probe.onnx", tensors, batches, threads)
    candidates = []
    for node in nodes:
        if task is not None:
            task.describe(f"sensitivity: {node.name}")
        single = _one_node_model(model, node, captured[0])
        fp32_path, int8_path = work / "sensitivity.fp32.onnx", work / "sensitivity.int8.onnx"
        onnx.save_model(single, str(fp32_path))
        feeds = [{n: values[n] for n in node.input if n and n not in initializers} for values in captured]
        quantize_one(fp32_path, int8_path, feeds)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.log_severity_level = 3
        session = ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])
        axis = 1 if node.op_type in ("Conv", "ConvTranspose") else -1  # the output channels
        error = reference = 0.0
        for feed, values in zip(feeds, captured, strict=True):
            got = np.moveaxis(session.run(None, feed)[0].astype(np.float64), axis, -1)
            want = np.moveaxis(values[node.output[0]].astype(np.float64), axis, -1)
            channels = want.shape[-1]
            error = error + np.sum(((got - want) ** 2).reshape(-1, channels), axis=0)
            reference = reference + np.sum((want**2).reshape(-1, channels), axis=0)
        weight = initializers[node.input[WEIGHT_INPUT[node.op_type]]]
        size = int(np.prod(weight.dims)) * 4
        # each output channel's relative error, averaged: a channel 1000x larger than the others
        # must not hide what quantization does to the rest
        proxy = float(np.mean(np.sqrt(error / np.maximum(reference, 1e-30))))
        candidates.append(Candidate(node.name, node.op_type, proxy, size))
        if task is not None:
            task.advance()
    for path in (work / "sensitivity.fp32.onnx", work / "sensitivity.int8.onnx"):
        path.unlink(missing_ok=True)
    return sorted(candidates, key=lambda c: -c.proxy)
