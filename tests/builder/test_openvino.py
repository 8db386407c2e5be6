"""OpenVINO variants for real: IR converted from the export, NNCF INT8, gated, written as
``<name>_openvino`` with an ``openvino`` backend config, and served by the local Triton's Python
backend with answers equal to OpenVINO run in this process."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.builder.tiny_models import write_tiny_project
from tritium.builder.pipeline import ACCEPTED, build_recipe
from tritium.builder.recipe import parse_recipe
from tritium.builder.repository import read_model
from tritium.builder.runners import OpenVinoRunner
from tritium.errors import RecipeError

pytest.importorskip("openvino")
pytest.importorskip("nncf")

CALIBRATION = {"dataset": {"kind": "npz", "path": "calib.npz", "labels": None}}


@pytest.fixture(scope="module")
def openvino_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("openvino")
    recipe = write_tiny_project(
        root / "project",
        variants=[
            {"kind": "onnx-fp32"},
            # OpenVINO's ~0.1 ms per call is 10x onnxruntime's on this microsecond MLP: the
            # performance rule would reject it (rightly), so these variants are judged on accuracy/size
            {"kind": "openvino-fp32", "objective": "none"},
            {"kind": "openvino-int8", "calibration": CALIBRATION, "objective": "size"},
        ],
    )
    result = build_recipe(recipe, repository=root / "repo", output_dir=root / "out", show_progress=False)
    return root, result


def test_openvino_variants_are_gated_and_written_as_a_model_of_their_own(openvino_build):
    root, result = openvino_build
    assert {v.name: v.status for v in result.variants} == {
        "fp32": ACCEPTED,
        "openvino-fp32": ACCEPTED,
        "openvino-int8": ACCEPTED,
    }
    assert result.written == {"tiny": [1], "tiny_openvino": [1, 2]}
    model = read_model(root / "repo", "tiny_openvino")
    assert model.config.backend == "openvino" and not model.config.platform
    assert model.config.default_model_filename == "model.xml"
    assert model.config.parameters["INFERENCE_PRECISION_HINT"].string_value == "f32"
    for version in (1, 2):
        assert {p.name for p in (root / "repo" / "tiny_openvino" / str(version)).iterdir()} == {
            "model.xml",
            "model.bin",
            "lineage.json",
        }
    int8 = model.versions[1].lineage
    assert int8["variant"] == "openvino-int8"
    assert "quantize-nncf-int8" in [s["name"] for s in int8["steps"]]
    assert "openvino" in int8["tools"] and "nncf" in int8["tools"]
    assert int8["machine"]["device"] == "cpu"
    by_name = {v.name: v for v in result.variants}
    assert by_name["openvino-int8"].size_bytes < by_name["openvino-fp32"].size_bytes / 2


def test_the_fp32_ir_answers_like_the_export(openvino_build):
    import onnxruntime as ort

    root, _ = openvino_build
    x = np.random.default_rng(3).normal(size=(5, 16)).astype(np.float32)
    session = ort.InferenceSession(str(root / "repo" / "tiny" / "1" / "model.onnx"))
    expected = session.run(None, {"x": x})[0]
    got = OpenVinoRunner(root / "repo" / "tiny_openvino" / "1" / "model.xml", "fp32").run({"x": x})
    np.testing.assert_allclose(next(iter(got.values())), expected, atol=1e-5)


def test_served_by_the_local_triton_like_openvino_in_process(openvino_build, local_triton):
    root, _ = openvino_build
    triton = local_triton(root / "repo", models=["tiny_openvino"])
    x = np.random.default_rng(4).normal(size=(3, 16)).astype(np.float32)
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        for version in (1, 2):
            tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            served = client.infer("tiny_openvino", [tensor], model_version=str(version)).as_numpy("logits")
            path = root / "repo" / "tiny_openvino" / str(version) / "model.xml"
            expected = OpenVinoRunner(path, "in-process", precision="f32").run({"x": x})["logits"]
            np.testing.assert_array_equal(served, expected)
    finally:
        client.close()


def test_openvino_variants_must_share_one_precision(tmp_path):
    from tritium.builder.plan import plan_build

    recipe = parse_recipe(
        {
            "name": "m",
            "source": {"kind": "onnx", "path": "m.onnx"},
            "inputs": [{"name": "x", "dtype": "FP32", "shape": ["batch", 4]}],
            "outputs": [{"name": "y"}],
            "validation": {"dataset": {"kind": "npz", "path": "v.npz"}, "metric": "top1"},
            "budget": 0.01,
            "variants": [
                {"kind": "openvino-fp32", "inference_precision": "auto"},
                {"kind": "openvino-int8", "calibration": CALIBRATION},
            ],
        }
    )
    with pytest.raises(RecipeError, match="different inference_precision values"):
        plan_build(recipe)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        (
            {"kind": "openvino-fp32", "inference_precision": "fp32"},
            "'variants[0].inference_precision': Input should be",
        ),
        ({"kind": "openvino-int8"}, "'variants[0].calibration' is required"),
        ({"kind": "openvino-int8", "calibration": CALIBRATION, "preset": "fast"}, "'variants[0].preset'"),
    ],
)
def test_a_wrong_openvino_variant_is_one_line_naming_the_field(variant, message):
    data = {
        "name": "m",
        "source": {"kind": "onnx", "path": "m.onnx"},
        "inputs": [{"name": "x", "dtype": "FP32", "shape": ["batch", 4]}],
        "outputs": [{"name": "y"}],
        "validation": {"dataset": {"kind": "npz", "path": "v.npz"}, "metric": "top1"},
        "budget": 0.01,
        "variants": [variant],
    }
    with pytest.raises(RecipeError) as caught:
        parse_recipe(data, "recipe.yaml")
    assert message in str(caught.value) and "\n" not in str(caught.value)
