"""Distillation: the student and its control (same student, no teacher) are both trained and both
reported, the gate judges the student like any variant, and a failing student factory fails alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.builder.tiny_models import write_cnn_project, write_tiny_project
from tritium.builder.pipeline import ACCEPTED, FAILED, REJECTED, build_recipe
from tritium.cli import main


def test_student_and_control_are_both_trained_and_reported(cnn_build):
    root, result, by_name = cnn_build
    student = by_name["distill"]
    assert student.status == ACCEPTED, student.reason
    details = student.artifact.training.details
    assert details["teacher_parameters"] >= 4 * details["student_parameters"]
    assert student.stats.parameters == details["student_parameters"]
    control = details["control"]
    assert control["trained"] and control["metric"] == "top1" and len(control["losses"]) == 12
    assert 0.5 < control["value"] <= 1.0
    assert control["student_value"] == pytest.approx(student.decision.checks[0].value, abs=1e-9)
    report = result.reports["markdown"].read_text()
    assert "## Training: distill (accepted)" in report
    assert f"control (same student, same data, no teacher): top1 {control['value']:.4f}" in report
    ref = result.version_of("distill")
    lineage = json.loads((root / "repo" / ref.model / str(ref.version) / "lineage.json").read_text())
    assert lineage["training"]["details"]["control"]["value"] == control["value"]
    assert lineage["training"]["technique"] == "distill" and lineage["training"]["epochs"] == 12


def test_with_few_labels_the_teacher_teaches_from_the_unlabelled_rest(cnn_build):
    _, _, by_name = cnn_build
    student = by_name["distill-few-labels"]
    details = student.artifact.training.details
    assert details["labelled_samples"] == 50 and details["transfer_samples"] == 1437
    control = details["control"]
    assert control["samples"] == 50  # the control has only the labelled samples
    # ... for as many optimizer steps as the student: 12 epochs x 23 batches over 1 batch of 50
    assert control["epochs"] == 12 * 23
    assert control["student_value"] > control["value"]  # here distillation beats its control


def test_the_gate_judges_the_student(tmp_path):
    recipe = write_cnn_project(
        tmp_path / "p",
        variants=[
            {"kind": "onnx-fp32", "objective": "none"},
            # two epochs at a tiny learning rate: the student has learned almost nothing
            {
                "kind": "distill",
                "student": {"kwargs": {"width": 4}},
                "epochs": 2,
                "learning_rate": 0.00001,
                "objective": "none",
            },
        ],
    )
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    student = result.variants[1]
    assert student.status == REJECTED and "OVER BUDGET" in student.reason
    assert "vs the control (same student, no teacher)" in student.reason  # the comparison is in the verdict
    assert result.written == {"cnn": [1]}


def test_a_failing_student_factory_fails_alone(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    recipe = write_cnn_project(
        tmp_path / "p",
        variants=[
            {"kind": "onnx-fp32", "objective": "none"},
            {"kind": "distill", "student": {"factory": "tests.builder.tiny_models:failing_student"}},
            {"kind": "distill", "name": "missing", "student": {"factory": "tests.builder.tiny_models:nope"}},
        ],
    )
    code = main(["build", str(recipe), "-r", str(tmp_path / "repo"), "-o", str(tmp_path / "o"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 7
    assert len(captured.err.strip().splitlines()) == 1
    assert (
        "distill failed: variant distill: student factory 'tests.builder.tiny_models:failing_student' raised "
        "ValueError: no student of width 4" in captured.out
    )
    assert "missing failed: variant missing:" in captured.out
    assert "written: {'cnn': [1]}" in captured.out


def test_distill_without_training_section_cannot_apply(tmp_path):
    recipe = write_cnn_project(
        tmp_path / "p",
        variants=[{"kind": "onnx-fp32", "objective": "none"}, {"kind": "distill", "student": {}}],
        training=None,
    )
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    assert result.variants[1].status == FAILED
    assert "distillation changes and fine-tunes a PyTorch model" not in result.variants[1].reason
    assert "it needs the recipe's 'training' section" in result.variants[1].reason


def test_an_embedding_student_learns_the_teachers_outputs_without_a_control(tmp_path):
    # mse to the teacher's outputs (the embedding-model path): no labels are used, so there is no
    # control to train, and the report says why
    recipe = write_tiny_project(
        tmp_path / "p",
        variants=[
            {"kind": "onnx-fp32", "objective": "none"},
            {
                "kind": "distill",
                "student": {"factory": "tests.builder.tiny_models:small_mlp"},
                "epochs": 30,
                "learning_rate": 0.003,
                "objective": "none",
            },
        ],
        training={"dataset": {"kind": "npz", "path": "transfer.npz", "labels": None}, "loss": "mse"},
        budget=1.0,
    )
    # a transfer set of its own: the validation inputs are never trained on
    np.savez(
        tmp_path / "p" / "transfer.npz", x=np.random.default_rng(1).normal(size=(512, 16)).astype(np.float32)
    )
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    student = result.variants[1]
    assert student.status == ACCEPTED, student.reason
    details = student.artifact.training.details
    assert details["loss"] == "mse to the teacher's outputs"
    assert details["control"] == {
        "trained": False,
        "why": "no labels: the teacher's outputs are the only targets",
    }
    losses = student.artifact.training.losses
    assert losses[-1] < losses[0] / 2
    assert "control: not trained (no labels" in result.reports["markdown"].read_text()
