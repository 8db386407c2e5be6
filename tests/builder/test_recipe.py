from pathlib import Path

import pytest
import yaml

from tritium.builder.recipe import load_recipe, parse_recipe, variant_name
from tritium.errors import RecipeError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

MINIMAL = {
    "name": "tiny",
    "source": {"kind": "onnx", "path": "model.onnx"},
    "inputs": [{"name": "x", "dtype": "FP32", "shape": ["batch", 4]}],
    "outputs": [{"name": "y"}],
    "validation": {"dataset": {"kind": "npz", "path": "val.npz"}, "metric": "top1"},
    "budget": 0.01,
    "variants": [{"kind": "onnx-fp32"}],
}


@pytest.mark.parametrize("example", ["digits", "minilm"])
def test_examples_validate(example):
    loaded = load_recipe(EXAMPLES / example / "recipe.yaml")
    assert loaded.recipe.name == example
    assert len(loaded.sha256) == 64


def test_minimal_recipe_gets_defaults():
    recipe = parse_recipe(MINIMAL)
    assert recipe.triton.max_batch_size == 32
    assert recipe.batch_axis == "batch"
    assert recipe.inputs[0].dynamic_axes == {0: "batch"}
    assert variant_name(recipe.variants[0]) == "fp32"


def _error(data) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, "r.yaml")
    return str(info.value)


def test_unknown_field_is_named():
    data = {**MINIMAL, "variants": [{"kind": "onnx-int8-dynamic", "per_chanel": True}]}
    message = _error(data)
    assert "unknown field 'variants[0].per_chanel'" in message
    assert "\n" not in message


def test_unknown_top_level_field_is_named():
    assert "unknown field 'budgett'" in _error({**MINIMAL, "budgett": 1})


def test_missing_field_is_named():
    data = {k: v for k, v in MINIMAL.items() if k != "budget"}
    assert "'budget' is required" in _error(data)


def test_unknown_variant_kind():
    message = _error({**MINIMAL, "variants": [{"kind": "onnx-int4"}]})
    assert "variants[0]" in message and "onnx-int4" in message


def test_fixed_first_dim_defaults_to_no_batching():
    # shapes copied from an old ONNX file (batch fixed to 1), max_batch_size left out
    recipe = parse_recipe({**MINIMAL, "inputs": [{"name": "x", "dtype": "FP32", "shape": [1, 4]}]})
    assert recipe.triton.max_batch_size == 0
    assert recipe.batch_axis is None and recipe.fixed_batch == 1
    with_triton = {
        **MINIMAL,
        "inputs": [{"name": "x", "dtype": "FP32", "shape": [2, 4]}],
        "triton": {"warmup": False},
    }
    assert parse_recipe(with_triton).triton.max_batch_size == 0
    assert parse_recipe(with_triton).fixed_batch == 2


def test_batching_asked_for_a_fixed_first_dim_says_how_to_fix_it():
    data = {
        **MINIMAL,
        "inputs": [{"name": "x", "dtype": "FP32", "shape": [1, 4]}],
        "triton": {"max_batch_size": 8},
    }
    message = _error(data)
    assert "input 'x' has a fixed first dim ([1, 4])" in message
    assert "set triton.max_batch_size: 0 (or leave it out)" in message
    assert "dynamic batch axis such as 'batch'" in message


def test_each_variant_kind_has_its_objective():
    variants = [
        {"kind": "onnx-fp32"},
        {"kind": "onnx-int8-dynamic"},
        {"kind": "onnx-int8-static", "calibration": {"dataset": {"kind": "npz", "path": "c.npz"}}},
        {"kind": "onnx-fp16"},
        {"kind": "torchscript"},
        {"kind": "onnx-int8-dynamic", "per_channel": True, "objective": "size"},
    ]
    recipe = parse_recipe({**MINIMAL, "variants": variants})
    assert [v.objective.value for v in recipe.variants] == [
        "latency",
        "latency",
        "latency",
        "size",
        "none",
        "size",
    ]
    assert recipe.performance.tolerance == 0.3


def test_objective_and_performance_errors_name_the_field():
    message = _error({**MINIMAL, "variants": [{"kind": "onnx-fp16", "objective": "speed"}]})
    assert "'variants[0].objective'" in message and "latency" in message
    message = _error({**MINIMAL, "performance": {"tolerance": -0.1}})
    assert "'performance.tolerance'" in message
    assert "unknown field 'performance.round'" in _error({**MINIMAL, "performance": {"round": 3}})


def test_duplicate_variant_names_rejected():
    data = {**MINIMAL, "variants": [{"kind": "onnx-fp32"}, {"kind": "onnx-fp32"}]}
    assert "repeated: ['fp32']" in _error(data)


def test_transformer_optimization_needs_shape():
    data = {**MINIMAL, "variants": [{"kind": "onnx-fp32", "optimization": "transformer"}]}
    assert "num_heads and hidden_size" in _error(data)


def test_check_output_must_exist():
    data = {**MINIMAL, "validation": {**MINIMAL["validation"], "output": "nope"}}
    assert "'nope' is not a declared output" in _error(data)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "absent.yaml")


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ninputs: [\n")
    with pytest.raises(RecipeError, match="invalid YAML at line"):
        load_recipe(path)


def test_relative_paths_resolve_against_recipe(tmp_path):
    path = tmp_path / "sub" / "r.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(MINIMAL))
    loaded = load_recipe(path)
    assert loaded.resolve(Path("model.onnx")) == (tmp_path / "sub" / "model.onnx").resolve()


def test_profile_batch_sizes_must_be_positive_and_within_max():
    assert "greater than or equal to 1" in _error({**MINIMAL, "profile": {"batch_sizes": [0, 4]}})
    assert "exceed triton.max_batch_size 32" in _error({**MINIMAL, "profile": {"batch_sizes": [64]}})
