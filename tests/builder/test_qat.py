"""Quantization-aware training: recovers accuracy where static INT8 loses more than the budget, runs in
onnxruntime and on the local Triton, trains deterministically, and fails alone when it cannot apply."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import yaml

from tests.builder.tiny_models import write_qat_project, write_tiny_project
from tritium.builder.events import EventLog, TaskStarted
from tritium.builder.pipeline import ACCEPTED, FAILED, REJECTED, build_recipe
from tritium.cli import main


@pytest.fixture(scope="module")
def qat_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("qat")
    events = EventLog()
    result = build_recipe(
        write_qat_project(root / "p"),
        repository=root / "repo",
        output_dir=root / "out",
        show_progress=False,
        on_event=events,
    )
    return root, result, events


def test_qat_recovers_what_static_int8_loses(qat_build):
    _, result, _ = qat_build
    static, qat, untrained = result.variants
    # one scale for an activation whose range 4 units widen 200x: static INT8 loses > the 0.03 budget
    assert static.status == REJECTED and "OVER BUDGET" in static.reason
    assert static.decision.checks[0].drop > 0.03
    # fine-tuned under fake quantization, the weights adapt to the coarse grid: within it
    assert qat.status == ACCEPTED, qat.reason
    assert qat.decision.checks[0].drop <= 0.03
    # and it is the training that does it: the same fake quantization, untrained, is over budget
    assert untrained.status == REJECTED and untrained.decision.checks[0].drop > 0.03
    assert result.written == {"wide": [1]}


def test_the_qat_model_is_int8_and_runs_in_onnxruntime(qat_build):
    root, result, _ = qat_build
    path = root / "repo" / "wide" / "1" / "model.onnx"
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "FakeQuantize" not in ops
    int8 = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    assert sum(int(np.prod(t.dims)) for t in int8) == 16 * 64 + 64 * 64 + 64 * 4  # every weight matrix
    data = np.load(root / "p" / "val.npz")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    accuracy = (session.run(None, {"x": data["x"]})[0].argmax(1) == data["labels"]).mean()
    assert accuracy == pytest.approx(result.variants[1].decision.checks[0].value)


def test_qat_lineage_records_the_training(qat_build):
    root, _, events = qat_build
    lineage = json.loads((root / "repo" / "wide" / "1" / "lineage.json").read_text())
    assert lineage["kind"] == "qat-int8" and lineage["derived_from"] == "source"
    training = lineage["training"]
    assert training["technique"] == "qat-int8" and training["loss"] == "cross_entropy"
    assert training["epochs"] == 4 and training["seed"] == 0 and training["samples"] == 4096
    assert len(training["losses"]) == 4 and training["losses"][-1] < training["losses"][0]
    assert training["torch"].startswith("2.13")
    assert [s["name"] for s in lineage["steps"]] == [
        "qat-fine-tune",
        "export-onnx-qdq",
        "fold-weight-quantization",
        "verify-qat-export",
    ]
    verify = lineage["steps"][-1]["params"]
    assert verify["verified_shapes"] and all(
        c["max_abs_error"] <= verify["max_limit"] for c in verify["verified_shapes"]
    )
    assert "accuracy_control" not in lineage
    assert any("qat-int8: training" in e.description for e in events.of(TaskStarted))


def test_qat_training_is_deterministic(qat_build, tmp_path):
    root, first, _ = qat_build
    again = build_recipe(
        write_qat_project(tmp_path / "p", variants=[{"kind": "qat-int8", "objective": "none"}]),
        repository=tmp_path / "repo",
        output_dir=tmp_path / "o",
        show_progress=False,
    )
    assert again.variants[0].artifact.training.losses == first.variants[1].artifact.training.losses
    assert (tmp_path / "repo" / "wide" / "1" / "model.onnx").read_bytes() == (
        root / "repo" / "wide" / "1" / "model.onnx"
    ).read_bytes()


@pytest.mark.slow
def test_local_triton_serves_the_qat_model_like_onnxruntime(qat_build, local_triton):
    root, _, _ = qat_build
    triton = local_triton(root / "repo", models=["wide"])
    try:
        assert triton.failed_models == {}
        x = np.load(root / "p" / "val.npz")["x"][:8]  # max_batch_size 8
        session = ort.InferenceSession(
            str(root / "repo" / "wide" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        served = client.infer("wide", [tensor], model_version="1").as_numpy("logits")
        np.testing.assert_allclose(served, session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
        client.close()
    finally:
        triton.stop()


# -- what cannot apply ---------------------------------------------------------------------------------


def test_qat_without_a_training_section_fails_alone(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    recipe = write_tiny_project(
        tmp_path / "p", variants=[{"kind": "onnx-fp32", "objective": "none"}, {"kind": "qat-int8"}]
    )
    code = main(["build", str(recipe), "-r", str(tmp_path / "repo"), "-o", str(tmp_path / "o"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 7
    error = captured.err.strip()
    assert len(error.splitlines()) == 1 and "qat-int8" in error, error
    assert (
        "qat-int8 failed: quantization-aware training needs the recipe's 'training' section" in captured.out
    )
    assert "written: {'tiny': [1]}" in captured.out  # the other variant was built
    assert "needs the recipe's 'training' section" in (tmp_path / "o" / "report.md").read_text()


def test_qat_from_an_onnx_source_fails_alone(tmp_path):
    first = build_recipe(
        write_tiny_project(tmp_path / "a", variants=[{"kind": "onnx-fp32", "objective": "none"}]),
        repository=tmp_path / "r1",
        output_dir=tmp_path / "o1",
        show_progress=False,
    )
    exported = tmp_path / "r1" / "tiny" / "1" / "model.onnx"
    assert first.written == {"tiny": [1]}
    recipe = write_tiny_project(
        tmp_path / "b",
        source={"kind": "onnx", "path": str(exported)},
        variants=[{"kind": "onnx-fp32", "objective": "none"}, {"kind": "qat-int8"}],
        training={"dataset": {"kind": "npz", "path": "val.npz"}, "loss": "cross_entropy"},
    )
    result = build_recipe(recipe, repository=tmp_path / "r2", output_dir=tmp_path / "o2", show_progress=False)
    fp32, qat = result.variants
    assert fp32.status == ACCEPTED and qat.status == FAILED
    assert (
        "training fine-tunes the weights of a PyTorch model; this recipe's source is an ONNX file"
        in qat.reason
    )


def test_a_training_factory_runs_the_users_loop(tmp_path):
    recipe = write_qat_project(
        tmp_path / "p",
        variants=[{"kind": "qat-int8", "objective": "none"}],
        training={"factory": "tests.builder.tiny_models:calibrate_only", "kwargs": {"batches": 3}},
    )
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    (qat,) = result.variants
    assert qat.artifact is not None, qat.reason
    record = qat.artifact.training.as_record()
    assert record.factory == "tests.builder.tiny_models:calibrate_only" and record.losses == []


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"loss": "mse"}, "'training': Value error, give 'dataset' and 'loss', or a 'factory'"),
        (
            {"factory": "m:f", "loss": "mse", "dataset": {"kind": "npz", "path": "t.npz"}},
            "'factory' runs your own loop: leave 'dataset' and 'loss' out",
        ),
        ({"dataset": {"kind": "npz", "path": "t.npz"}, "loss": "l1"}, "'training.loss': Input should be"),
        ({"factory": "m:f", "epochs": 0}, "'training.epochs': Input should be greater than or equal to 1"),
    ],
)
def test_training_section_errors_name_the_field(tmp_path, capsys, training, message):
    recipe = write_qat_project(tmp_path / "p")
    data = yaml.safe_load(recipe.read_text())
    data["training"] = training
    recipe.write_text(yaml.safe_dump(data))
    assert main(["build", str(recipe), "-r", str(tmp_path / "repo"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error


def test_cross_entropy_without_labels_is_a_data_error(tmp_path, capsys):
    recipe = write_qat_project(tmp_path / "p")
    data = yaml.safe_load(recipe.read_text())
    data["training"].update(
        loss="cross_entropy", dataset={"kind": "npz", "path": "calib.npz", "labels": None}
    )
    recipe.write_text(yaml.safe_dump(data))
    assert main(["build", str(recipe), "-r", str(tmp_path / "repo"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert "training loss 'cross_entropy' needs labels, the training set has none" in error
