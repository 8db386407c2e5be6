"""TensorRT where it runs: the onnxruntime configs' TensorRT accelerator and the trtexec job of
`tritium engines`, validated offline against Triton's protobuf schema, the Compose Specification
and Kubernetes' schemas. Building and serving the engine needs a GPU and TensorRT (docs/gpu.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tests.serving import compose_schema
from tritium.builder.engines import engine_plan, shape_profiles, tensorrt_image, write_engine_job
from tritium.builder.recipe import parse_recipe
from tritium.builder.repository import NewVersion, write_versions
from tritium.builder.triton_config import build_config, parse_pbtxt, to_pbtxt
from tritium.errors import RecipeError

KUBERNETES_VERSION = "1.33.0"

RECIPE = {
    "name": "enc",
    "source": {"kind": "onnx", "path": "enc.onnx"},
    "inputs": [
        {"name": "input_ids", "dtype": "INT64", "shape": ["batch", "sequence"]},
        {"name": "attention_mask", "dtype": "INT64", "shape": ["batch", "sequence"]},
    ],
    "outputs": [{"name": "embedding"}],
    "validation": {"dataset": {"kind": "npz", "path": "v.npz"}, "metric": "cosine"},
    "budget": 0.01,
    "variants": [{"kind": "onnx-fp32"}],
    "triton": {"max_batch_size": 32, "gpu_accelerator": "tensorrt", "instance_groups": [{"kind": "gpu"}]},
    "export": {"verify_dims": {"sequence": [7, 64, 128]}},
    "profile": {"batch_sizes": [1, 8, 16], "fixed_dims": {"sequence": 96}},
}


def _recipe(**overrides):
    return parse_recipe({**RECIPE, **overrides})


def _onnx_config(recipe, versions=(1,)):
    from tritium.builder.recipe import DType

    return build_config(
        recipe,
        name=recipe.name,
        platform="onnxruntime_onnx",
        versions=list(versions),
        output_dtypes={"embedding": DType.FP32},
        output_shapes={"embedding": ["batch", 384]},
    )


def test_the_tensorrt_accelerator_carries_precision_workspace_cache_and_a_full_batch_warmup():
    config = _onnx_config(_recipe())
    again = text_format.Parse(to_pbtxt(config), mc.ModelConfig())  # Triton's own schema, round trip
    accelerator = again.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters) == {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": str(1 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": "/tmp/tritium-trt-cache/enc",
    }
    assert [w.batch_size for w in again.model_warmup] == [1, 32]
    assert list(again.model_warmup[1].inputs["input_ids"].dims) == [96]


def test_no_engine_cache_when_asked():
    triton = {**RECIPE["triton"], "tensorrt_engine_cache": None}
    accelerator = _onnx_config(_recipe(triton=triton)).optimization.execution_accelerators
    assert "trt_engine_cache_enable" not in accelerator.gpu_execution_accelerator[0].parameters


def test_profiles_come_from_the_recipe_inputs_and_batch_sizes():
    profiles = shape_profiles(_recipe())
    assert [(p.name, p.min, p.opt, p.max) for p in profiles] == [
        ("input_ids", (1, 7), (16, 96), (32, 128)),
        ("attention_mask", (1, 7), (16, 96), (32, 128)),
    ]


def test_a_tuned_preferred_batch_is_the_opt_shape():
    profiles = shape_profiles(_recipe(), tuned=[4, 8])
    assert profiles[0].opt == (8, 96) and profiles[0].max == (32, 128)
    retuned = shape_profiles(_recipe(), tuned=[24], max_batch_size=16)  # tune lowered max_batch_size
    assert retuned[0].opt == (16, 96) and retuned[0].max == (16, 128)


def test_a_dynamic_axis_without_sizes_names_the_field_to_add():
    with pytest.raises(RecipeError, match=r"add export.verify_dims.sequence"):
        shape_profiles(_recipe(export={}, profile={}))


def test_fixed_shapes_need_no_profile():
    recipe = parse_recipe(
        {
            **RECIPE,
            "inputs": [{"name": "pixels", "dtype": "FP32", "shape": [1, 3, 8, 8]}],
            "triton": {"gpu_accelerator": "tensorrt"},
            "profile": {},
        }
    )
    plan = engine_plan_for(recipe)
    assert plan.profiles[0].min == plan.profiles[0].max == (1, 3, 8, 8)
    assert not any(a.startswith("--minShapes") for a in plan.trtexec_args())


def engine_plan_for(recipe):
    from tritium.builder.recipe import LoadedRecipe

    loaded = LoadedRecipe(recipe=recipe, path=__import__("pathlib").Path("/r/recipe.yaml"), sha256="0" * 64)
    return engine_plan(loaded, 1, triton_image="nvcr.io/nvidia/tritonserver:25.10-py3")


def test_the_tensorrt_container_matches_the_triton_release():
    assert tensorrt_image("nvcr.io/nvidia/tritonserver:25.10-py3") == "nvcr.io/nvidia/tensorrt:25.10-py3"
    with pytest.raises(RecipeError, match="--image"):
        tensorrt_image("my/triton:latest")


def test_trtexec_arguments():
    args = engine_plan_for(_recipe()).trtexec_args()
    assert args[:3] == [
        "trtexec",
        "--onnx=/models/enc/1/model.onnx",
        "--saveEngine=/models/enc_tensorrt/1/model.plan",
    ]
    assert "--minShapes=input_ids:1x7,attention_mask:1x7" in args
    assert "--optShapes=input_ids:16x96,attention_mask:16x96" in args
    assert "--maxShapes=input_ids:32x128,attention_mask:32x128" in args
    assert "--fp16" in args


@pytest.fixture
def engine_job(tmp_path):
    from tritium.builder.recipe import LoadedRecipe

    recipe = _recipe()
    model_file = tmp_path / "model.onnx"
    _tiny_onnx(model_file)
    write_versions(
        tmp_path / "repo",
        "enc",
        [NewVersion(model_file, "model.onnx", {"variant": "fp32"})],
        lambda versions: _onnx_config(recipe, versions),
    )
    loaded = LoadedRecipe(recipe=recipe, path=tmp_path / "recipe.yaml", sha256="0" * 64)
    return write_engine_job(
        loaded, tmp_path / "repo", tmp_path / "job", triton_image="nvcr.io/nvidia/tritonserver:25.10-py3"
    )


def _tiny_onnx(path):
    import torch

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(100, 4)

        def forward(self, input_ids, attention_mask):
            return (self.emb(input_ids) * attention_mask.unsqueeze(-1)).mean(1)

    ids = torch.ones(2, 5, dtype=torch.int64)
    torch.onnx.export(
        Enc(),
        (ids, ids),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask")},
        dynamo=False,
    )


def test_the_tensorrt_plan_config_validates_against_tritons_schema(engine_job):
    config = parse_pbtxt(engine_job.config.read_text())
    assert config.name == "enc_tensorrt" and config.platform == "tensorrt_plan"
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    assert not config.HasField("optimization")
    assert list(config.version_policy.specific.versions) == [1]
    assert [i.name for i in config.input] == ["input_ids", "attention_mask"] and config.max_batch_size == 32


def test_the_compose_service_validates_and_reserves_a_gpu_for_trtexec(engine_job):
    document = compose_schema.load(engine_job.compose)
    compose_schema.validate(document)
    (service,) = document["services"].values()
    assert service["image"] == "nvcr.io/nvidia/tensorrt:25.10-py3"
    assert "trtexec --onnx=/models/enc/1/model.onnx" in service["command"][2]
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_the_kubernetes_job_validates_strictly(engine_job):
    import kubernetes_validate

    documents = list(yaml.safe_load_all(engine_job.kubernetes.read_text()))
    assert [d["kind"] for d in documents] == ["ConfigMap", "Job"]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    container = documents[1]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert parse_pbtxt(documents[0]["data"]["config.pbtxt"]).platform == "tensorrt_plan"


def test_the_cli_writes_the_job_and_names_a_wrong_recipe(engine_job, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    run = [sys.executable, "-c", "import sys; from tritium.cli import main; sys.exit(main())", "engines"]
    done = subprocess.run(
        [*run, "enc", "--recipe", str(recipe), "-r", str(tmp_path / "repo"), "-o", str(tmp_path / "cli-job")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "input_ids: min [1, 7] opt [16, 96] max [32, 128]" in done.stdout
    assert (tmp_path / "cli-job" / "job.yaml").is_file()
    wrong = subprocess.run(
        [*run, "other", "--recipe", str(recipe), "-r", str(tmp_path / "repo")], capture_output=True, text=True
    )
    assert wrong.returncode == 2 and "builds 'enc', not 'other'" in wrong.stderr
