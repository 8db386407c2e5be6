import hashlib
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritium.errors import NotFoundError, RepositoryError
from tritium.serving.runtime_repo import derive, derive_model, read_config, runtime_config

CANONICAL = """
name: "digits"
platform: "onnxruntime_onnx"
max_batch_size: 64
input { name: "pixels" data_type: TYPE_FP32 dims: [1, 8, 8] }
output { name: "logits" data_type: TYPE_FP32 dims: [10] }
instance_group { count: 2 kind: KIND_GPU gpus: [0] }
dynamic_batching { max_queue_delay_microseconds: 500 }
version_policy { specific { versions: [1, 3] } }
optimization { execution_accelerators { gpu_execution_accelerator { name: "tensorrt" } } }
model_warmup { name: "w" batch_size: 1 inputs { key: "pixels" value { data_type: TYPE_FP32 dims: [1, 8, 8] zero_data: true } } }
"""


def canonical() -> mc.ModelConfig:
    return text_format.Parse(CANONICAL, mc.ModelConfig())


def test_runtime_config_keeps_the_serving_contract():
    config = runtime_config(canonical(), intra_op_threads=1)
    assert config.backend == "python" and not config.platform
    assert config.name == "digits" and config.max_batch_size == 64
    assert [(i.name, list(i.dims), i.data_type) for i in config.input] == [
        ("pixels", [1, 8, 8], mc.TYPE_FP32)
    ]
    assert [(o.name, list(o.dims)) for o in config.output] == [("logits", [10])]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.version_policy.specific.versions) == [1, 3]
    assert [(g.count, g.kind, list(g.gpus)) for g in config.instance_group] == [
        (2, mc.ModelInstanceGroup.KIND_CPU, [])
    ]
    assert not config.HasField("optimization") and not config.model_warmup
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params == {
        "tritium_engine": "onnxruntime",
        "tritium_artifact": "model.onnx",
        "tritium_intra_op_threads": "1",
        "tritium_allow_spinning": "0",
    }


def test_thread_settings_follow_the_canonical_config():
    source = canonical()
    source.parameters["intra_op_thread_count"].string_value = "3"  # Triton's onnxruntime backend key
    source.parameters["tritium_allow_spinning"].string_value = "1"
    params = {k: v.string_value for k, v in runtime_config(source).parameters.items()}
    assert params["tritium_intra_op_threads"] == "3"
    assert params["tritium_allow_spinning"] == "1"


@pytest.mark.parametrize(
    ("key", "value"),
    [("intra_op_thread_count", "-1"), ("intra_op_thread_count", "four"), ("tritium_allow_spinning", "true")],
)
def test_bad_thread_settings_are_refused_in_one_line(key, value):
    source = canonical()
    source.parameters[key].string_value = value
    with pytest.raises(RepositoryError, match=rf"digits.*{key}.*{value}"):
        runtime_config(source)


def test_runtime_config_round_trips_through_text_format():
    config = runtime_config(canonical(), versions=[3])
    parsed = text_format.Parse(text_format.MessageToString(config), mc.ModelConfig())
    assert parsed == config
    assert list(parsed.version_policy.specific.versions) == [3]


def test_torchscript_runs_with_torch_and_custom_filename():
    source = canonical()
    source.platform = "pytorch_libtorch"
    source.default_model_filename = "traced.pt"
    params = runtime_config(source).parameters
    assert params["tritium_engine"].string_value == "torchscript"
    assert params["tritium_artifact"].string_value == "traced.pt"


def test_unsupported_platform_is_refused_with_a_hint():
    source = canonical()
    source.platform = "tensorrt_plan"
    with pytest.raises(RepositoryError, match=r"tensorrt_plan.*--runtime docker"):
        runtime_config(source)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_derive_links_versions_and_leaves_the_canonical_repository_untouched(tiny_repository, tmp_path):
    before = _digest(tiny_repository)
    result = derive(tiny_repository, tmp_path / "runtime")
    assert _digest(tiny_repository) == before
    assert [(m.name, m.engine, m.versions) for m in result.models] == [("tiny", "onnxruntime", (1, 2))]
    for version in (1, 2):
        version_dir = tmp_path / "runtime" / "tiny" / str(version)
        assert (version_dir / "model.onnx").resolve() == (
            tiny_repository / "tiny" / str(version) / "model.onnx"
        )
        assert "class TritonPythonModel" in (version_dir / "model.py").read_text()
    config = read_config(tmp_path / "runtime" / "tiny" / "config.pbtxt")
    assert config.backend == "python" and list(config.version_policy.specific.versions) == [1, 2]
    assert read_config(tiny_repository / "tiny" / "config.pbtxt").platform == "onnxruntime_onnx"


def test_derive_skips_what_it_cannot_run_and_names_unknown_models(tiny_repository_copy, tmp_path):
    plan = tiny_repository_copy / "detector"
    (plan / "1").mkdir(parents=True)
    (plan / "1" / "model.plan").write_bytes(b"engine")
    (plan / "config.pbtxt").write_text('name: "detector" platform: "tensorrt_plan" max_batch_size: 1')
    result = derive(tiny_repository_copy, tmp_path / "runtime")
    assert [m.name for m in result.models] == ["tiny"]
    assert [s.name for s in result.skipped] == ["detector"]
    assert "tensorrt_plan" in result.skipped[0].reason
    with pytest.raises(NotFoundError, match="no model nope"):
        derive(tiny_repository_copy, tmp_path / "other", models=["nope"])


def test_rederiving_picks_up_a_new_version(tiny_repository_copy, tmp_path, write_tiny_version):
    runtime = tmp_path / "runtime"
    derive(tiny_repository_copy, runtime)
    write_tiny_version(tiny_repository_copy / "tiny", 3)
    derived = derive_model(tiny_repository_copy / "tiny", runtime / "tiny")
    assert derived.versions == (1, 2, 3)
    assert (runtime / "tiny" / "3" / "model.py").is_file()
    only = derive_model(tiny_repository_copy / "tiny", runtime / "tiny", versions=[3])
    assert list(read_config(runtime / "tiny" / "config.pbtxt").version_policy.specific.versions) == [3]
    assert only.versions == (1, 2, 3)
    with pytest.raises(NotFoundError, match="no version 7"):
        derive_model(tiny_repository_copy / "tiny", runtime / "tiny", versions=[7])
