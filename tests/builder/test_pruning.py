"""Pruning: unstructured sparsity lands in the exported weights and shows in the compressed size;
structured pruning removes parameters and FLOPs, runs in onnxruntime and on the local Triton, and
can be rebuilt from its recorded plan; prune → INT8 stacks are one recipe; bad input fails alone."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import tritonclient.grpc as grpcclient
import yaml
from onnx import numpy_helper

from tests.builder.tiny_models import (
    small_cnn,
    tiny_bert,
    write_bert_project,
    write_cnn_project,
    write_tiny_project,
)
from tritium.builder.model_stats import COMPRESSOR, compressed_size
from tritium.builder.pipeline import ACCEPTED, FAILED, build_recipe
from tritium.builder.steps.prune_structured import replay
from tritium.builder.steps.prune_unstructured import schedule
from tritium.cli import main


def _weights(path) -> list[np.ndarray]:
    """The Conv/Gemm weight tensors of an ONNX file (two or more dimensions)."""
    graph = onnx.load(str(path)).graph
    used = {node.input[1] for node in graph.node if node.op_type in ("Conv", "Gemm", "MatMul")}
    return [numpy_helper.to_array(t) for t in graph.initializer if t.name in used and len(t.dims) >= 2]


def _version_path(root, result, name):
    ref = result.version_of(name)
    return root / "repo" / ref.model / str(ref.version)


def test_unstructured_sparsity_of_the_exported_weights_is_the_target(cnn_build):
    root, result, by_name = cnn_build
    pruned = by_name["prune-unstructured-90"]
    assert pruned.status == ACCEPTED, pruned.reason
    weights = _weights(_version_path(root, result, pruned.name) / "model.onnx")
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)
    assert abs(zeros - 0.9) <= 0.01
    assert pruned.stats.sparsity == pytest.approx(zeros, abs=1e-6)
    # no speed is asked of it: judged on the compressed file, which is far smaller than the FP32 one's
    performance = pruned.performance
    assert performance.objective.value == "size" and performance.size_measure == COMPRESSOR
    assert performance.size_bytes * 3 < performance.reference_size_bytes
    fp32 = by_name["fp32"]
    assert pruned.stats.raw_bytes == pytest.approx(fp32.stats.raw_bytes, rel=0.01)  # zeros stored as floats
    assert pruned.stats.compressed_bytes * 3 < fp32.stats.compressed_bytes
    assert pruned.stats.compressed_bytes == compressed_size(
        _version_path(root, result, pruned.name) / "model.onnx"
    )


def test_unstructured_lineage_records_the_schedule_and_training(cnn_build):
    root, result, _ = cnn_build
    lineage = json.loads((_version_path(root, result, "prune-unstructured-90") / "lineage.json").read_text())
    training = lineage["training"]
    assert training["technique"] == "prune-unstructured" and training["epochs"] == 3
    assert len(training["data_sha256"]) == 64 and training["final_loss"] == training["losses"][-1]
    assert training["details"]["sparsity_per_epoch"] == [round(s, 4) for s in schedule(0.9, 3, "gradual")]
    assert lineage["model_stats"]["compressor"] == COMPRESSOR
    assert lineage["model_stats"]["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert lineage["parent_chain"] == ["source"]


def test_gradual_schedule_reaches_the_target_and_one_shot_starts_there():
    assert schedule(0.9, 5, "gradual")[0] < 0.9 and schedule(0.9, 5, "gradual")[-2:] == [0.9, 0.9]
    assert sorted(schedule(0.5, 4, "gradual")) == schedule(0.5, 4, "gradual")
    assert schedule(0.9, 3, "one-shot") == [0.9, 0.9, 0.9]


def test_prune_then_int8_is_one_recipe(cnn_build):
    root, result, by_name = cnn_build
    stacked = by_name["prune-unstructured-90.int8-static"]
    assert stacked.status == ACCEPTED, stacked.reason
    assert stacked.artifact.parent == "prune-unstructured-90"
    assert stacked.stats.sparsity >= 0.89  # the zeros survive quantization (symmetric INT8: zero is 0)
    assert stacked.stats.compressed_bytes * 10 <= by_name["fp32"].stats.raw_bytes
    lineage = json.loads((_version_path(root, result, stacked.name) / "lineage.json").read_text())
    assert lineage["derived_from"] == "prune-unstructured-90"
    assert lineage["parent_version"] == result.version_of("prune-unstructured-90").version
    assert lineage["parent_chain"] == ["source", "prune-unstructured-90"]
    steps = [s["name"] for s in lineage["steps"]]
    assert steps[0] == "prune-unstructured" and "quantize-static-int8" in steps and "export-onnx" in steps


def test_structured_pruning_removes_parameters_and_flops(cnn_build):
    root, result, by_name = cnn_build
    pruned = by_name["prune-structured-50"]
    assert pruned.status == ACCEPTED, pruned.reason
    plan = pruned.artifact.pruning
    assert plan["parameters_after"] < 0.5 * plan["parameters_before"]
    assert plan["macs_after"] < 0.5 * plan["macs_before"]
    assert pruned.stats.parameters == plan["parameters_after"]
    assert pruned.stats.raw_bytes * 2 < by_name["fp32"].stats.raw_bytes  # dense and smaller
    path = _version_path(root, result, pruned.name) / "model.onnx"
    shapes = sorted(w.shape for w in _weights(path))
    assert (8, 1, 3, 3) in shapes and (16, 8, 3, 3) in shapes  # half the filters, the classes kept
    assert any(s[0] == 10 or s[-1] == 10 for s in shapes)
    data = np.load(root / "p" / "val.npz")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    accuracy = (session.run(None, {"pixels": data["pixels"]})[0].argmax(1) == data["labels"]).mean()
    assert accuracy == pytest.approx(pruned.decision.checks[0].value)


def test_the_recorded_plan_rebuilds_the_pruned_architecture(cnn_build):
    root, result, _ = cnn_build
    lineage = json.loads((_version_path(root, result, "prune-structured-50") / "lineage.json").read_text())
    model = small_cnn()
    model.load_state_dict(torch.load(root / "p" / "cnn.pt", weights_only=True))
    replay(model.eval(), (torch.zeros(2, 1, 8, 8),), lineage["pruning"])
    onnx_shapes = sorted(
        w.shape for w in _weights(_version_path(root, result, "prune-structured-50") / "model.onnx")
    )
    torch_shapes = sorted(
        tuple(m.weight.shape) if isinstance(m, torch.nn.Conv2d) else tuple(m.weight.shape)[::-1]
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    )
    # the exporter writes Linear weights as Gemm(transB=1) [out, in]; compare as sets of dims
    assert sorted(sorted(s) for s in onnx_shapes) == sorted(sorted(s) for s in torch_shapes)


def test_structured_pruning_removes_whole_attention_heads_of_a_transformer(tmp_path):
    """heads: true on a 4-head BERT: half the heads and half the FFN neurons go, the hidden-size
    layers kept whole (ignored_layers); the exported model runs and the replayed plan matches it."""
    recipe = write_bert_project(
        tmp_path / "p",
        source={"kind": "pytorch", "factory": "tests.builder.tiny_models:tiny_bert", "kwargs": {"heads": 4}},
        variants=[
            {
                "kind": "prune-structured", "amount": 0.5, "heads": True, "epochs": 1, "objective": "none",
                "ignored_layers": ["*.attention.output.dense", "*.output.dense", "bert.pooler.dense"],
            }
        ],
        training={"dataset": {"kind": "npz", "path": "val.npz", "labels": None}, "loss": "mse"},
        budget=100.0,
    )  # fmt: skip
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    (pruned,) = result.variants
    assert pruned.artifact is not None, pruned.reason
    plan = pruned.artifact.pruning
    assert plan["attention_heads"] == {"bert.encoder.layer.0.attention.self": [4, 2]}
    assert plan["parameters_after"] < plan["parameters_before"]
    model = tiny_bert(heads=4)
    example = (torch.ones(2, 12, dtype=torch.int64), torch.ones(2, 12, dtype=torch.int64))
    replay(model.eval(), example, plan)
    attention = model.bert.encoder.layer[0].attention.self
    assert attention.num_attention_heads == 2 and tuple(attention.query.weight.shape) == (16, 32)
    assert tuple(model.bert.encoder.layer[0].intermediate.dense.weight.shape) == (32, 32)  # FFN 64 -> 32
    path = _version_path(tmp_path, result, pruned.name) / "model.onnx"
    graph = onnx.load(str(path))
    shapes = {tuple(t.dims) for t in graph.graph.initializer}
    assert (32, 16) in shapes or (16, 32) in shapes  # query/key/value with 2 heads of 8
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (embedding,) = session.run(None, {"input_ids": example[0].numpy(), "attention_mask": example[1].numpy()})
    assert embedding.shape == (2, 32)


def test_heads_on_a_model_without_attention_fails_alone(tmp_path):
    recipe = write_cnn_project(
        tmp_path / "p",
        variants=[
            {"kind": "onnx-fp32", "objective": "none"},
            {"kind": "prune-structured", "amount": 0.5, "heads": True, "objective": "none"},
        ],
    )
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    assert result.variants[0].status == ACCEPTED
    assert result.variants[1].status == FAILED and "no attention module" in result.variants[1].reason


@pytest.mark.slow
def test_local_triton_serves_the_structured_model_like_onnxruntime(cnn_build, local_triton):
    root, result, _ = cnn_build
    ref = result.version_of("prune-structured-50")
    triton = local_triton(root / "repo", models=["cnn"])
    try:
        assert triton.failed_models == {}
        x = np.load(root / "p" / "val.npz")["pixels"][:16]
        session = ort.InferenceSession(
            str(root / "repo" / "cnn" / str(ref.version) / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        tensor = grpcclient.InferInput("pixels", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        served = client.infer("cnn", [tensor], model_version=str(ref.version)).as_numpy("logits")
        np.testing.assert_allclose(served, session.run(None, {"pixels": x})[0], rtol=1e-5, atol=1e-6)
        client.close()
    finally:
        triton.stop()


def test_a_rebuild_gives_the_same_metrics(cnn_build, tmp_path):
    _, _, by_name = cnn_build
    recipe = write_cnn_project(tmp_path / "p")
    data = yaml.safe_load(recipe.read_text())
    data["variants"] = [
        v
        for v in data["variants"]
        if v["kind"] in ("prune-unstructured", "prune-structured", "distill") and "labelled" not in v
    ]
    recipe.write_text(yaml.safe_dump(data))
    again = build_recipe(recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False)
    for variant in again.variants:
        assert variant.decision.checks[0].value == pytest.approx(
            by_name[variant.name].decision.checks[0].value, abs=1e-6
        )
        assert variant.artifact.training.losses == by_name[variant.name].artifact.training.losses
    control = again.variants[-1].artifact.training.details["control"]
    assert control["value"] == by_name["distill"].artifact.training.details["control"]["value"]


# -- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"), [("sparsity", 0), ("sparsity", 1), ("sparsity", 1.5), ("amount", -0.1)]
)
def test_a_fraction_outside_0_1_fails_its_variant_alone_in_one_line(
    tmp_path, capsys, monkeypatch, field, value
):
    monkeypatch.setenv("COLUMNS", "250")
    kind = "prune-unstructured" if field == "sparsity" else "prune-structured"
    recipe = write_tiny_project(
        tmp_path / "p",
        variants=[{"kind": "onnx-fp32", "objective": "none"}, {"kind": kind, field: value, "name": "bad"}],
        training={"dataset": {"kind": "npz", "path": "val.npz"}, "loss": "cross_entropy"},
    )
    code = main(["build", str(recipe), "-r", str(tmp_path / "repo"), "-o", str(tmp_path / "o"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 7, captured
    assert len(captured.err.strip().splitlines()) == 1
    assert f"bad failed: {field} {value:g} is outside (0, 1)" in captured.out, captured.out
    assert "written: {'tiny': [1]}" in captured.out  # the other variant still built


def test_pruning_a_model_without_prunable_layers_fails_alone(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    recipe = write_tiny_project(
        tmp_path / "p",
        source={"kind": "pytorch", "factory": "tests.builder.tiny_models:no_weights"},
        variants=[
            {"kind": "onnx-fp32", "objective": "none"},
            {"kind": "prune-unstructured", "sparsity": 0.5},
            {"kind": "prune-structured", "amount": 0.5},
        ],
        training={"dataset": {"kind": "npz", "path": "val.npz"}, "loss": "mse"},
        budget=1.0,
    )
    code = main(["build", str(recipe), "-r", str(tmp_path / "repo"), "-o", str(tmp_path / "o"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 7, captured
    assert len(captured.err.strip().splitlines()) == 1
    assert (
        "prune-unstructured-50 failed: variant prune-unstructured-50: the model has no prunable layers"
        in captured.out
    )
    assert (
        "prune-structured-50 failed: variant prune-structured-50: the model has no prunable layers"
        in captured.out
    )
    assert "written: {'tiny': [1]}" in captured.out


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        (
            [{"kind": "onnx-int8-dynamic", "parent": "nope"}],
            "'variants[0].parent': 'nope' is not a variant listed before this one",
        ),
        (
            [{"kind": "onnx-fp32"}, {"kind": "prune-unstructured", "sparsity": 0.5, "parent": "fp32"}],
            "prune-unstructured starts from the PyTorch source model",
        ),
        (
            [{"kind": "torchscript"}, {"kind": "onnx-fp16", "parent": "torchscript"}],
            "'torchscript' is a torchscript model, not ONNX",
        ),
    ],
)
def test_parent_errors_name_the_field(tmp_path, capsys, variants, message):
    recipe = write_tiny_project(tmp_path / "p", variants=variants)
    assert main(["build", str(recipe), "-r", str(tmp_path / "repo"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error


def test_an_over_budget_parent_fails_the_stack_with_its_reason(tmp_path):
    recipe = write_cnn_project(
        tmp_path / "p",
        variants=[
            {"kind": "onnx-fp32", "objective": "none"},
            # 97 % of the weights at once and one epoch at a small learning rate: over the budget
            {"kind": "prune-unstructured", "sparsity": 0.97, "schedule": "one-shot", "epochs": 1},
            {"kind": "onnx-fp16", "parent": "prune-unstructured-97"},
        ],
    )
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    _, pruned, child = result.variants
    assert pruned.status.value == "rejected", pruned.decision
    assert child.status == FAILED
    assert (
        child.reason.startswith("its parent prune-unstructured-97 was rejected (")
        and "OVER BUDGET" in child.reason
    )
    assert "nothing is built on a model the build turned down" in child.reason


@pytest.mark.parametrize(
    ("variant", "field"),
    [
        ({"kind": "prune-structured", "amount": 0.5, "heads": "sometimes"}, "heads"),
        ({"kind": "prune-structured", "amount": 0.5, "heads": [[[True]]]}, "heads"),
        ({"kind": "prune-unstructured", "sparsity": "lots"}, "sparsity"),
        ({"kind": "prune-unstructured", "sparsity": "9" * 5000}, "sparsity"),
    ],
)
def test_a_wrong_typed_pruning_field_is_a_one_line_recipe_error(tmp_path, capsys, variant, field):
    recipe = write_tiny_project(
        tmp_path / "p",
        variants=[{"kind": "onnx-fp32"}, variant],
        training={"dataset": {"kind": "npz", "path": "val.npz"}, "loss": "cross_entropy"},
    )
    assert main(["build", str(recipe), "-r", str(tmp_path / "repo"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"variants[1].{field}" in error and len(error) < 2000, error
