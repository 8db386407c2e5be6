"""Accuracy-controlled INT8: the pure search (table-driven), and real builds of a model whose per-tensor
INT8 is over budget until the right nodes are kept in FP32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from tests.builder.tiny_models import outlier_mlp, write_outlier_project, write_tiny_project
from tritium.builder.accuracy_control import Outcome, Trial, greedy_exclusion
from tritium.builder.data import Batch, EvalSet, hold_out
from tritium.builder.events import EventLog, TaskStarted
from tritium.builder.gate import Check, GateDecision
from tritium.builder.pipeline import ACCEPTED, REJECTED, build_recipe
from tritium.builder.sensitivity import Candidate
from tritium.cli import main

# -- the search, pure: a fake "model" whose metric is a function of the excluded nodes ----------------


def candidates(*names: str) -> list[Candidate]:
    """Ranked as given (the proxy's order), proxies decreasing."""
    return [Candidate(name, "MatMul", 1.0 - i / 10, 4) for i, name in enumerate(names)]


def model(gains: dict[str, float], *, base: float = 0.90, together: dict[frozenset, float] | None = None):
    """trial(excluded) with metric = base + each node's gain (+ a bonus for some sets); budget 0.05."""
    calls: list[tuple[str, ...]] = []

    def trial(excluded: tuple[str, ...]) -> Trial:
        calls.append(excluded)
        value = base + sum(gains.get(n, 0.0) for n in excluded)
        for group, bonus in (together or {}).items():
            if group <= set(excluded):
                value += bonus
        return Trial(excluded, Path("/nonexistent"), GateDecision((Check("top1", 1.0, value, 0.05, True),)))

    return trial, calls


CASES = [
    # (gains, together, ranked by proxy, max, expected exclusions, outcome)
    pytest.param({"a": 0.06}, None, "abc", 3, ["a"], Outcome.WITHIN_BUDGET, id="the top candidate is enough"),
    pytest.param(
        {"a": 0.01, "b": 0.01, "c": 0.06},
        None,
        "abc",
        3,
        ["c"],
        Outcome.WITHIN_BUDGET,
        id="one node suffices even when the proxy ranks it third",
    ),
    pytest.param(
        {"a": 0.01, "b": 0.03, "c": 0.02},
        None,
        "abc",
        3,
        ["b", "c"],
        Outcome.WITHIN_BUDGET,
        id="largest measured gain first, not the proxy's order",
    ),
    pytest.param(
        {"a": 0.0, "b": 0.02},
        {frozenset("ab"): 0.04},
        "ab",
        3,
        ["b", "a"],
        Outcome.WITHIN_BUDGET,
        id="a node that helps only with another one is still tried",
    ),
    pytest.param(
        {"a": 0.02, "b": 0.02, "c": 0.02},
        None,
        "abc",
        2,
        ["a", "b"],
        Outcome.MAX_EXCLUDED,
        id="stops at max_excluded_nodes",
    ),
    pytest.param({"a": 0.01, "b": 0.01}, None, "ab", 5, ["a", "b"], Outcome.NO_CANDIDATES, id="runs out"),
]


@pytest.mark.parametrize(("gains", "together", "ranked", "limit", "expected", "outcome"), CASES)
def test_greedy_exclusion(gains, together, ranked, limit, expected, outcome):
    trial, _ = model(gains, together=together)
    result = greedy_exclusion(trial(()), candidates(*ranked), trial, max_excluded=limit, confirm=3)
    assert [e.candidate.node for e in result.exclusions] == expected
    assert result.outcome is outcome
    assert result.final.within_budget is (outcome is Outcome.WITHIN_BUDGET)


def test_a_model_within_budget_is_not_searched():
    trial, calls = model({}, base=0.99)
    result = greedy_exclusion(trial(()), candidates("a", "b"), trial, max_excluded=3, confirm=3)
    assert result.outcome is Outcome.NOT_NEEDED and result.exclusions == () and calls == [()]


def test_only_the_top_candidates_are_confirmed_alone():
    trial, calls = model({"a": 0.02, "b": 0.02, "c": 0.02, "d": 0.02})
    greedy_exclusion(trial(()), candidates("a", "b", "c", "d"), trial, max_excluded=4, confirm=2)
    singles = [c for c in calls if len(c) == 1]
    assert singles == [("a",), ("b",)]  # c and d are only tried on top of the others


def test_the_deadline_stops_the_search():
    trial, _ = model({"a": 0.02, "b": 0.02, "c": 0.02})
    ticks = iter([0.0, 1.0, 99.0, 99.0, 99.0])  # confirming, first exclusion, then late
    result = greedy_exclusion(
        trial(()),
        candidates("a", "b", "c"),
        trial,
        max_excluded=3,
        confirm=1,
        deadline=50.0,
        clock=lambda: next(ticks),
    )
    assert result.outcome is Outcome.TIME_LIMIT
    assert not result.final.within_budget


def test_hold_out_splits_every_fourth_sample_disjointly():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    full = EvalSet("validation", (Batch({"x": x[:6]}, np.arange(6)), Batch({"x": x[6:]}, np.arange(6, 10))))
    kept, held = hold_out(full)
    assert np.concatenate([b.inputs["x"] for b in held.batches]).ravel().tolist() == [3, 7]
    assert held.labels.tolist() == [3, 7]
    assert kept.samples == 8 and sorted(kept.labels.tolist() + held.labels.tolist()) == list(range(10))
    assert hold_out(full)[1].labels.tolist() == [3, 7]  # deterministic


# -- real builds ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outlier_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("accuracy-control")
    events = EventLog()
    result = build_recipe(
        write_outlier_project(root / "p"),
        repository=root / "repo",
        output_dir=root / "out",
        show_progress=False,
        on_event=events,
    )
    return root, result, events


def test_accuracy_control_turns_a_rejected_int8_into_an_accepted_one(outlier_build):
    _, result, _ = outlier_build
    plain, controlled = result.variants
    assert plain.status == REJECTED and "OVER BUDGET" in plain.reason  # per-tensor INT8 as it is
    assert controlled.status == ACCEPTED, controlled.reason
    assert controlled.decision.checks[0].drop <= 0.03
    trace = controlled.artifact.accuracy_control
    assert trace.result.outcome is Outcome.WITHIN_BUDGET
    assert 1 <= len(trace.excluded) <= 3
    assert result.written == {"outlier": [1]}


def test_the_excluded_nodes_are_fp32_in_the_written_model(outlier_build):
    root, result, _ = outlier_build
    excluded = result.variants[1].artifact.accuracy_control.excluded
    graph = onnx.load(str(root / "repo" / "outlier" / "1" / "model.onnx")).graph
    initializers = {t.name: t for t in graph.initializer}
    by_name = {n.name: n for n in graph.node}
    for node_name in excluded:  # a Gemm is rewritten as "<name>_MatMul" (+ Add) by the quantizer
        node = by_name.get(node_name) or by_name[node_name + "_MatMul"]
        assert node.op_type in ("MatMul", "Gemm"), node.op_type
        assert initializers[node.input[1]].data_type == onnx.TensorProto.FLOAT
    quantized = [n for n in graph.node if n.op_type == "MatMulInteger"]
    assert len(quantized) == 3 - len(excluded)  # the others are still INT8
    assert all(initializers[n.input[1]].data_type == onnx.TensorProto.INT8 for n in quantized)


def test_the_search_never_sees_the_gates_samples(outlier_build):
    _, result, _ = outlier_build
    assert result.validation == {"samples": 256, "gate_samples": 192, "held_out_for_search": 64}
    record = result.variants[1].artifact.accuracy_control.as_record()
    assert record.search_samples == 64 and "held out from the gate" in record.search_set


def test_lineage_records_each_exclusion_and_the_metric_after_it(outlier_build):
    root, result, _ = outlier_build
    lineage = json.loads((root / "repo" / "outlier" / "1" / "lineage.json").read_text())
    control = lineage["accuracy_control"]
    assert control["outcome"] == "within-budget"
    assert control["excluded_nodes"] == result.variants[1].artifact.accuracy_control.excluded
    assert [e["node"] for e in control["exclusions"]] == control["excluded_nodes"]
    metrics = [control["initial_metrics"]["top1"]] + [e["metrics"]["top1"] for e in control["exclusions"]]
    assert metrics[-1] >= control["baseline_metrics"]["top1"] - control["budgets"]["top1"] > metrics[0]
    assert control["exclusions"][-1]["within_budget"] and control["quantizable_nodes"] == 3
    step = next(s for s in lineage["steps"] if s["name"] == "quantize-dynamic-int8")
    assert step["params"]["nodes_to_exclude"] == control["excluded_nodes"]
    assert "training" not in lineage


def test_the_report_plots_the_metric_against_excluded_nodes(outlier_build):
    _, result, events = outlier_build
    plot = result.reports["accuracy_control_int8-dynamic-controlled"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = result.reports["markdown"].read_text()
    assert "## Accuracy control: int8-dynamic-controlled (accepted)" in text and plot.name in text
    build = json.loads(result.reports["json"].read_text())
    assert build["variants"][1]["accuracy_control"]["outcome"] == "within-budget"
    tasks = [e.description for e in events.of(TaskStarted)]
    assert any("sensitivity of 3 nodes" in t for t in tasks)


@pytest.mark.parametrize(
    ("control", "reason"),
    [
        ({"max_excluded_nodes": 1}, "accuracy control stopped at max_excluded_nodes (1 nodes kept in FP32)"),
        (
            {"max_excluded_nodes": 3, "max_seconds": 1e-6},
            "accuracy control hit its time limit (max_seconds 1e-06)",
        ),
    ],
    ids=["exclusions exhausted", "time limit"],
)
def test_a_search_that_stops_short_is_rejected_with_its_reason(tmp_path, control, reason):
    recipe = write_outlier_project(
        tmp_path / "p",
        variants=[
            {"kind": "onnx-fp32", "objective": "none"},
            {"kind": "onnx-int8-dynamic", "objective": "none", "accuracy_control": control},
        ],
    )
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    fp32, controlled = result.variants
    assert fp32.status == ACCEPTED  # the other variants still build
    assert controlled.status == REJECTED
    assert "OVER BUDGET" in controlled.reason and reason in controlled.reason
    assert reason in result.reports["markdown"].read_text()


def test_nothing_to_quantize_fails_that_variant_only(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    recipe = write_tiny_project(
        tmp_path / "p",
        source={"kind": "pytorch", "factory": "tests.builder.tiny_models:no_weights"},
        validation={"dataset": {"kind": "npz", "path": "val.npz", "labels": None}, "metric": "max_abs_error"},
        variants=[
            {"kind": "onnx-fp32", "objective": "none"},
            {"kind": "onnx-int8-dynamic", "objective": "none", "accuracy_control": {"max_excluded_nodes": 2}},
        ],
    )
    code = main(["build", str(recipe), "-r", str(tmp_path / "repo"), "-o", str(tmp_path / "o"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 7
    error = captured.err.strip()
    assert len(error.splitlines()) == 1 and "int8-dynamic-controlled" in error, error
    assert "variant int8-dynamic-controlled: nothing to quantize" in captured.out
    report = (tmp_path / "o" / "report.md").read_text()
    assert "failed" in report and "nothing to quantize" in report


def test_a_search_set_of_its_own_leaves_the_validation_set_whole(tmp_path):
    folder = tmp_path / "p"
    recipe = write_outlier_project(folder)
    x = np.random.default_rng(9).normal(size=(64, 16)).astype(np.float32)
    with torch.inference_mode():
        labels = outlier_mlp()(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(folder / "search.npz", x=x, labels=labels)
    data = yaml.safe_load(recipe.read_text())
    data["variants"][1]["accuracy_control"]["dataset"] = {"kind": "npz", "path": "search.npz"}
    recipe.write_text(yaml.safe_dump(data))
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    assert result.validation == {"samples": 256, "gate_samples": 256, "held_out_for_search": 0}
    controlled = result.variants[1]
    assert controlled.status == ACCEPTED, controlled.reason
    assert "accuracy_control.dataset, 64 samples" in controlled.artifact.accuracy_control.search_set


def test_a_search_set_that_cannot_score_the_metric_is_an_error(tmp_path, capsys):
    folder = tmp_path / "p"
    recipe = write_outlier_project(folder)
    np.savez(folder / "search.npz", x=np.zeros((8, 16), np.float32))
    data = yaml.safe_load(recipe.read_text())
    data["variants"][1]["accuracy_control"]["dataset"] = {"kind": "npz", "path": "search.npz", "labels": None}
    recipe.write_text(yaml.safe_dump(data))
    assert main(["build", str(recipe), "-r", str(tmp_path / "repo"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "variant int8-dynamic-controlled: accuracy_control.dataset has no labels" in error
    assert not (tmp_path / "repo").exists()


def test_accuracy_control_fields_are_checked(tmp_path, capsys):
    recipe = write_outlier_project(
        tmp_path / "p", variants=[{"kind": "onnx-int8-dynamic", "accuracy_control": {"max_seconds": 5}}]
    )
    assert main(["build", str(recipe), "-r", str(tmp_path / "repo"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "'variants[0].accuracy_control.max_excluded_nodes' is required" in error
