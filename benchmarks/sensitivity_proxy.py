"""Does the accuracy-control proxy rank minilm's nodes like the metric does?

For every weighted node of minilm's FP32 graph (ORT basic optimization, as the recipe builds it),
measures in one run

- the metric cost of quantizing that node alone (per-tensor dynamic INT8: the whole model quantized
  with only that node, then cosine to FP32 on the search sentences): what the issue names as the
  ranking, at one full quantization and one validation run per node;
- the proxy the build uses (tritium.builder.sensitivity): one FP32 run, then each node quantized as
  a one-node model, output error per channel;

and prints both rankings, their Spearman correlation, the overlap of their top k, and the seconds
each took.

    .venv/bin/python -m benchmarks.sensitivity_proxy [--samples 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.cpu_info import cpu_description

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic
    from scipy.stats import spearmanr

    from examples.minilm import minilm_model
    from tritium.builder import export as exporting
    from tritium.builder import sensitivity
    from tritium.builder.artifacts import quiet_tool
    from tritium.builder.data import Batch, EvalSet
    from tritium.builder.recipe import OnnxInt8DynamicVariant, load_recipe
    from tritium.builder.sources import load_source
    from tritium.builder.steps.int8_dynamic import quantize_dynamic

    print(f"CPU: {cpu_description()}")
    batches = tuple(Batch(inputs, None) for inputs, _ in minilm_model.search_batches())
    search = EvalSet("search", batches)
    loaded = load_recipe(ROOT / "examples" / "minilm" / "recipe.yaml")
    with tempfile.TemporaryDirectory(prefix="tritium-proxy-") as tmp:
        tmp = Path(tmp)
        source = load_source(loaded)
        export = tmp / "export.onnx"
        exporting.export_onnx(source.module, loaded.recipe, export)
        fp32 = tmp / "fp32.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(fp32)
        ort.InferenceSession(str(export), options, providers=["CPUExecutionProvider"])

        def outputs(path: Path) -> np.ndarray:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            return np.concatenate([session.run(None, b.inputs)[0] for b in batches]).astype(np.float64)

        reference = outputs(fp32)

        def cosine(values: np.ndarray) -> float:
            norms = np.linalg.norm(values, axis=1) * np.linalg.norm(reference, axis=1)
            return float(np.mean(np.sum(values * reference, axis=1) / norms))

        spec = OnnxInt8DynamicVariant(per_channel=False)
        started = time.perf_counter()
        ranked = sensitivity.rank(
            fp32,
            search,
            lambda one, out, _feeds: quantize_dynamic(one, spec, out, tmp),
            tmp,
            max_samples=args.samples,
        )
        proxy_seconds = time.perf_counter() - started

        started = time.perf_counter()
        cost = {}
        for candidate in ranked:
            if candidate.op_type == "Gather":
                continue  # ORT's dynamic quantizer keys Gather by its table, not measured alone here
            out = tmp / "alone.onnx"
            with quiet_tool(tmp):
                ort_quantize_dynamic(
                    str(fp32),
                    str(out),
                    per_channel=False,
                    weight_type=QuantType.QInt8,
                    nodes_to_quantize=[candidate.node],
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
            cost[candidate.node] = 1.0 - cosine(outputs(out))
        metric_seconds = time.perf_counter() - started

    nodes = [c.node for c in ranked if c.node in cost]
    proxy = [c.proxy for c in ranked if c.node in cost]
    costs = [cost[n] for n in nodes]
    rho = spearmanr(proxy, costs).statistic
    by_cost = sorted(nodes, key=lambda n: -cost[n])
    print(
        f"{len(nodes)} MatMul nodes; proxy {proxy_seconds:.1f} s, metric cost of each alone {metric_seconds:.1f} s"
    )
    print(f"Spearman rank correlation proxy vs metric cost: {rho:.3f}")
    for k in (1, 3, 5, 8):
        print(f"top {k}: {len(set(nodes[:k]) & set(by_cost[:k]))} of {k} in common")
    print("\n| rank | by proxy (proxy) | by metric cost (1 − cosine) |\n|---|---|---|")
    short = {n: n.removeprefix("/transformer/encoder/") for n in nodes}
    for index in range(8):
        a, b = nodes[index], by_cost[index]
        print(f"| {index + 1} | {short[a]} ({proxy[index]:.3f}) | {short[b]} ({cost[b]:.4f}) |")


if __name__ == "__main__":
    main()
