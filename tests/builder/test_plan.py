"""The planner: recipe in, ordered steps out, each naming its parent. Pure: nothing runs here."""

from __future__ import annotations

import pytest

from tritium.builder.plan import plan_build
from tritium.builder.recipe import parse_recipe
from tritium.errors import RecipeError

CALIBRATION = {"dataset": {"kind": "npz", "path": "calib.npz", "labels": None}}
FP32 = {"kind": "onnx-fp32"}
DYNAMIC = {"kind": "onnx-int8-dynamic"}
STATIC = {"kind": "onnx-int8-static", "calibration": CALIBRATION}
FP16 = {"kind": "onnx-fp16"}
TORCHSCRIPT = {"kind": "torchscript"}
TORCH = {"kind": "pytorch", "factory": "m:build"}
ONNX = {"kind": "onnx", "path": "model.onnx"}


def recipe(variants, source=TORCH, **extra):
    return parse_recipe(
        {
            "name": "m",
            "source": source,
            "inputs": [{"name": "x", "dtype": "FP32", "shape": ["batch", 4]}],
            "outputs": [{"name": "y"}],
            "validation": {"dataset": {"kind": "npz", "path": "val.npz"}, "metric": "top1"},
            "budget": 0.01,
            "variants": variants,
            **extra,
        }
    )


# (variants, source, expected [(name, parent, fallback)])
CASES = [
    pytest.param([FP32], TORCH, [("fp32", "export", None)], id="fp32 from the export"),
    pytest.param(
        [FP32, DYNAMIC, STATIC, FP16],
        TORCH,
        [
            ("fp32", "export", None),
            ("int8-dynamic", "fp32", "export"),
            ("int8-static", "fp32", "export"),
            ("fp16", "fp32", "export"),
        ],
        id="int8 and fp16 from the optimized fp32, the export if it is turned down",
    ),
    pytest.param(
        [DYNAMIC, FP32, FP16],
        TORCH,
        [("int8-dynamic", "export", None), ("fp32", "export", None), ("fp16", "fp32", "export")],
        id="only a fp32 variant planned before can be a parent",
    ),
    pytest.param(
        [FP32, {**FP32, "name": "fp32-none", "optimization": "none"}, DYNAMIC],
        TORCH,
        [("fp32", "export", None), ("fp32-none", "export", None), ("int8-dynamic", "fp32", "export")],
        id="the first fp32 variant is the parent",
    ),
    pytest.param(
        [TORCHSCRIPT, FP32],
        TORCH,
        [("torchscript", "source", None), ("fp32", "export", None)],
        id="torchscript",
    ),
    pytest.param(
        [FP32, STATIC], ONNX, [("fp32", "export", None), ("int8-static", "fp32", "export")], id="onnx"
    ),
]


@pytest.mark.parametrize(("variants", "source", "expected"), CASES)
def test_each_step_names_its_parent(variants, source, expected):
    plan = plan_build(recipe(variants, source))
    assert [(s.name, s.parent, s.fallback) for s in plan.steps] == expected
    assert [s.kind for s in plan.steps] == [v["kind"] for v in variants]
    assert all(s.blocked is None for s in plan.steps)
    assert not plan.holds_out


@pytest.mark.parametrize(("source", "first"), [(TORCH, "export-onnx"), (ONNX, "check-onnx")])
def test_the_first_step_depends_on_the_source(source, first):
    assert plan_build(recipe([FP32], source)).first == first


def test_torchscript_from_an_onnx_source_is_a_recipe_error():
    with pytest.raises(RecipeError, match=r"'variants\[1\]': a torchscript variant needs a PyTorch source"):
        plan_build(recipe([FP32, TORCHSCRIPT], ONNX))


QAT = {"kind": "qat-int8"}
TRAINING = {"dataset": {"kind": "npz", "path": "train.npz"}, "loss": "cross_entropy"}
CONTROLLED = {"kind": "onnx-int8-dynamic", "accuracy_control": {"max_excluded_nodes": 2}}
SEARCH_SET = {"kind": "npz", "path": "search.npz"}


# (variants, source, extra recipe fields, expected [(name, parent, blocked reason fragment or None)], holds out)
BLOCKING = [
    pytest.param(
        [FP32, QAT],
        TORCH,
        {"training": TRAINING},
        [("fp32", "export", None), ("qat-int8", "source", None)],
        False,
        id="qat from the torch model",
    ),
    pytest.param(
        [FP32, QAT],
        TORCH,
        {},
        [("fp32", "export", None), ("qat-int8", "source", "'training' section")],
        False,
        id="qat without training is blocked, the rest builds",
    ),
    pytest.param(
        [FP32, QAT],
        ONNX,
        {"training": TRAINING},
        [("fp32", "export", None), ("qat-int8", "source", "ONNX file")],
        False,
        id="qat from an onnx source is blocked",
    ),
    pytest.param(
        [FP32, QAT],
        {"kind": "torchscript", "path": "m.pt"},
        {"training": TRAINING},
        [("fp32", "export", None), ("qat-int8", "source", "TorchScript file")],
        False,
        id="qat from a torchscript source is blocked",
    ),
    pytest.param(
        [FP32, CONTROLLED],
        TORCH,
        {},
        [("fp32", "export", None), ("int8-dynamic-controlled", "fp32", None)],
        True,
        id="accuracy control without a dataset holds validation samples out",
    ),
    pytest.param(
        [{**CONTROLLED, "accuracy_control": {"max_excluded_nodes": 2, "dataset": SEARCH_SET}}],
        TORCH,
        {},
        [("int8-dynamic-controlled", "export", None)],
        False,
        id="accuracy control with a dataset of its own does not",
    ),
]


@pytest.mark.parametrize(("variants", "source", "extra", "expected", "holds_out"), BLOCKING)
def test_what_cannot_apply_is_planned_as_blocked(variants, source, extra, expected, holds_out):
    plan = plan_build(recipe(variants, source, **extra))
    assert [(s.name, s.parent) for s in plan.steps] == [(n, p) for n, p, _ in expected]
    for step, (_, _, blocked) in zip(plan.steps, expected, strict=True):
        assert (step.blocked is None) if blocked is None else (blocked in step.blocked), step.blocked
    assert plan.holds_out is holds_out
