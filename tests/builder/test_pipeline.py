"""End-to-end builds of a tiny model: real torch export, onnxruntime, quantization, repository."""

import json

import numpy as np
import onnxruntime as ort
import pytest

from tests.builder.test_repository import tree_digest
from tests.builder.tiny_models import write_tiny_project
from tritium.builder.events import (
    EventLog,
    StageFinished,
    StageStarted,
    TaskAdvanced,
    TaskFinished,
    TaskStarted,
    VariantFinished,
    VariantStarted,
)
from tritium.builder.pipeline import ACCEPTED, REJECTED, build_recipe
from tritium.builder.repository import read_model
from tritium.errors import BudgetError


@pytest.fixture(scope="module")
def first_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    recipe = write_tiny_project(root / "project")
    events = EventLog()
    result = build_recipe(
        recipe, repository=root / "repo", output_dir=root / "out", show_progress=False, on_event=events
    )
    return root, recipe, result, events


def test_every_variant_is_accepted_and_written(first_build):
    root, _, result, _ = first_build
    assert [v.status for v in result.variants] == [ACCEPTED] * 5
    assert result.written == {"tiny": [1, 2, 3, 4], "tiny_torchscript": [1]}
    onnx_model = read_model(root / "repo", "tiny")
    assert onnx_model.config.platform == "onnxruntime_onnx"
    assert read_model(root / "repo", "tiny_torchscript").config.platform == "pytorch_libtorch"
    assert (root / "repo" / "tiny_torchscript" / "1" / "model.pt").is_file()


def test_lineage_records_the_build(first_build):
    root, _recipe, result, _ = first_build
    lineage = json.loads((root / "repo" / "tiny" / "3" / "lineage.json").read_text())
    assert lineage["variant"] == "int8-static"
    assert lineage["parent_version"] == 1  # derived from this build's fp32 version
    assert lineage["recipe"]["sha256"] == result.recipe.sha256
    assert len(lineage["source"]["sha256"]) == 64
    assert [s["name"] for s in lineage["steps"]][:1] == ["export-onnx"]
    assert "quantize-static-int8" in [s["name"] for s in lineage["steps"]]
    assert lineage["tools"]["onnxruntime"] == ort.__version__
    assert lineage["metric"]["name"] == "top1" and lineage["metric"]["drop"] <= 0.05
    assert lineage["size_bytes"] == (root / "repo" / "tiny" / "3" / "model.onnx").stat().st_size
    assert {p["batch_size"] for p in lineage["latency"]} == {1, 2, 4, 8}
    assert all(p["p50_ms"] > 0 and p["throughput"] > 0 for p in lineage["latency"])


def test_int8_is_smaller_and_matches_labels(first_build):
    root, _, result, _ = first_build
    by_name = {v.name: v for v in result.variants}
    assert by_name["int8-dynamic-per-channel"].size_bytes < by_name["fp32"].size_bytes
    session = ort.InferenceSession(
        str(root / "repo" / "tiny" / "2" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    data = np.load(root / "project" / "val.npz")
    accuracy = (session.run(None, {"x": data["x"]})[0].argmax(1) == data["labels"]).mean()
    assert accuracy >= 0.95


def test_reports_are_written(first_build):
    _root, _, result, _ = first_build
    assert result.reports["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = result.reports["markdown"].read_text()
    assert "int8-dynamic-per-channel" in text and "accepted" in text
    build = json.loads(result.reports["json"].read_text())
    assert build["written"] == {"tiny": [1, 2, 3, 4], "tiny_torchscript": [1]}
    assert build["export_checks"] and all(c["max_abs_error"] < 1e-4 for c in build["export_checks"])


def test_rebuild_adds_new_versions(first_build, tmp_path):
    root, recipe, _, _ = first_build
    second = build_recipe(recipe, repository=root / "repo", output_dir=tmp_path, show_progress=False)
    assert second.written == {"tiny": [5, 6, 7, 8], "tiny_torchscript": [2]}
    assert list(read_model(root / "repo", "tiny").config.version_policy.specific.versions) == list(
        range(1, 9)
    )


def test_budget_no_variant_meets_leaves_repository_untouched(tmp_path):
    recipe = write_tiny_project(
        tmp_path / "p",
        validation={"dataset": {"kind": "npz", "path": "val.npz", "labels": None}, "metric": "max_abs_error"},
        budget=0.0,
        variants=[{"kind": "onnx-int8-dynamic"}],
    )
    repo = tmp_path / "repo"
    build_recipe(
        write_tiny_project(tmp_path / "ok"), repository=repo, output_dir=tmp_path / "o1", show_progress=False
    )
    before = tree_digest(repo)
    with pytest.raises(BudgetError) as info:
        build_recipe(recipe, repository=repo, output_dir=tmp_path / "o2", show_progress=False)
    assert "no variant of 'tiny' met the budget" in str(info.value)
    assert "int8-dynamic: rejected" in str(info.value)
    assert tree_digest(repo) == before
    assert (tmp_path / "o2" / "report.md").is_file()  # the rejection is still reported


def test_rejected_variant_is_reported_not_written(tmp_path):
    recipe = write_tiny_project(
        tmp_path / "p",
        validation={"dataset": {"kind": "npz", "path": "val.npz", "labels": None}, "metric": "max_abs_error"},
        budget=1e-5,
        variants=[{"kind": "onnx-fp32"}, {"kind": "onnx-int8-dynamic"}],
    )
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    assert [v.status for v in result.variants] == [ACCEPTED, REJECTED]
    assert "OVER BUDGET" in result.variants[1].reason
    assert result.written == {"tiny": [1]}
    assert not result.variants[1].latency  # rejected variants are not profiled


def test_static_int8_with_each_calibration_method(tmp_path):
    calib = {"kind": "npz", "path": "calib.npz", "labels": None}
    recipe = write_tiny_project(
        tmp_path / "p",
        variants=[
            {
                "kind": "onnx-int8-static",
                "name": f"int8-{method}",
                "objective": "size",
                "calibration": {"dataset": calib, "method": method},
            }
            for method in ("minmax", "entropy", "percentile")
        ],
    )
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    assert [v.status for v in result.variants] == [ACCEPTED] * 3
    methods = [
        next(s for s in v.artifact.steps if s.name == "quantize-static-int8").params["calibration_method"]
        for v in result.variants
    ]
    assert methods == ["minmax", "entropy", "percentile"]
    assert result.written == {"tiny": [1, 2, 3]}


def test_no_batching_with_a_dynamic_first_axis(tmp_path):
    # max_batch_size 0 asked for explicitly, first axis still dynamic: verified at one sample
    recipe = write_tiny_project(
        tmp_path / "p", triton={"max_batch_size": 0}, variants=[{"kind": "onnx-fp32"}]
    )
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    assert result.written == {"tiny": [1]}
    assert [c["batch"] for c in result.export_checks] == [1]
    config = read_model(tmp_path / "repo", "tiny").config
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [-1, 16]


def test_the_build_emits_its_events(first_build):
    _, _, result, events = first_build
    stages = [e.stage for e in events.of(StageStarted)]
    assert stages == ["loading", "baseline", "export", "variants", "profiling", "writing"]
    assert [e.stage for e in events.of(StageFinished)] == stages
    assert [(e.variant, e.parent) for e in events.of(VariantStarted)] == [
        ("fp32", "export"),
        ("int8-dynamic-per-channel", "fp32"),
        ("int8-static", "fp32"),
        ("fp16", "fp32"),
        ("torchscript", "source"),
    ]
    assert [(e.variant, e.status) for e in events.of(VariantFinished)] == [
        (v.name, v.status) for v in result.variants
    ]
    started = {e.task: e for e in events.of(TaskStarted)}
    assert {e.task for e in events.of(TaskFinished)} == set(started)  # every task ends
    advanced = [e for e in events.of(TaskAdvanced) if started[e.task].description == "variants"]
    assert sum(e.advance for e in advanced) == 5
