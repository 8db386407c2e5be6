import pytest
from google.protobuf import text_format

from tests.builder.test_recipe import MINIMAL
from tritium.builder.recipe import DType, parse_recipe
from tritium.builder.triton_config import build_config, parse_pbtxt, to_pbtxt, versions_to_serve


def _config(**triton):
    recipe = parse_recipe({**MINIMAL, "triton": triton} if triton else MINIMAL)
    if triton.get("max_batch_size") == 0:
        recipe = parse_recipe(
            {**MINIMAL, "inputs": [{"name": "x", "dtype": "FP32", "shape": [1, 4]}], "triton": triton}
        )
    return build_config(
        recipe,
        name="tiny",
        platform="onnxruntime_onnx",
        versions=[1, 2],
        output_dtypes={"y": DType.FP32},
        output_shapes={"y": ["batch", 3] if recipe.triton.max_batch_size else [1, 3]},
    )


def test_round_trip_through_triton_schema():
    config = _config()
    text = to_pbtxt(config)
    assert parse_pbtxt(text) == config
    assert 'platform: "onnxruntime_onnx"' in text
    assert "max_batch_size: 32" in text


def test_batched_dims_exclude_batch_axis():
    config = _config()
    assert list(config.input[0].dims) == [4]
    assert list(config.output[0].dims) == [3]
    assert config.input[0].data_type == parse_pbtxt("input{data_type: TYPE_FP32}").input[0].data_type


def test_dynamic_batching_and_instances():
    config = _config(
        max_batch_size=16, max_queue_delay_microseconds=250, instance_groups=[{"count": 2, "kind": "cpu"}]
    )
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert config.instance_group[0].count == 2
    assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU


def test_no_dynamic_batching_when_delay_is_null():
    assert not _config(max_queue_delay_microseconds=None).HasField("dynamic_batching")


def test_max_batch_size_zero_is_explicit():
    config = _config(max_batch_size=0)
    text = to_pbtxt(config)
    assert "max_batch_size: 0" in text
    assert list(config.input[0].dims) == [1, 4]
    assert parse_pbtxt(text) == config


def test_version_policy_lists_served_versions():
    assert list(_config().version_policy.specific.versions) == [1, 2]
    assert versions_to_serve([1, 2, 3, 4, 5], 3) == [3, 4, 5]


def test_warmup_uses_concrete_dims():
    config = _config()
    warm = config.model_warmup[0]
    assert warm.batch_size == 1
    assert list(warm.inputs["x"].dims) == [4] and warm.inputs["x"].zero_data


def test_tensorrt_accelerator_on_gpu():
    config = _config(gpu_accelerator="tensorrt", tensorrt_precision="FP16", instance_groups=[{"kind": "gpu"}])
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU


@pytest.mark.parametrize("bad", ["platform: 3", "max_batch_size: -", "unknown_field: 1"])
def test_invalid_pbtxt_is_refused(bad):
    with pytest.raises(text_format.ParseError):
        parse_pbtxt(bad)
