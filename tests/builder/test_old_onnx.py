"""Issue 16: ONNX files as public model zoos ship them, built, gated, served and matched end to end.

The model (tests/builder/old_onnx.py) is IR 3 with its weights listed as graph inputs, opset 9,
batch fixed to 1, with tensor names holding '/' and starting with a digit; its recipe leaves
``triton.max_batch_size`` out, as a new user would.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml

from tests.builder.old_onnx import INPUT, OUTPUT, SHAPE, write_old_onnx, write_old_project
from tests.gateway.running import RunningGateway
from tritium.builder import normalize
from tritium.builder.pipeline import ACCEPTED, REJECTED, build_recipe
from tritium.builder.recipe import load_recipe
from tritium.builder.repository import read_model
from tritium.errors import ModelSourceError

VARIANTS = [
    {"kind": "onnx-fp32"},
    {
        "kind": "onnx-int8-static",
        "calibration": {"dataset": {"kind": "npz", "path": "calib.npz", "labels": None}},
    },
    # judged on size: on a conv net dynamic INT8 is slower (see test_latency_rule_*), which is not
    # what this build is about
    {"kind": "onnx-int8-dynamic", "per_channel": True, "objective": "size"},
    {"kind": "onnx-fp16"},
]
SAMPLES = 24


@pytest.fixture(scope="module")
def old_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("old-onnx")
    recipe = write_old_project(root / "project", samples=SAMPLES, variants=VARIANTS)
    where_the_user_stands = root / "cwd"
    where_the_user_stands.mkdir()
    with contextlib.chdir(where_the_user_stands):
        result = build_recipe(recipe, repository=root / "repo", output_dir=root / "out", show_progress=False)
    return root, result


def lineage(root, version: int) -> dict:
    return json.loads((root / "repo" / "oldnet" / str(version) / "lineage.json").read_text())


def test_every_requested_variant_is_built_and_written(old_build):
    root, result = old_build
    assert [(v.name, v.status) for v in result.variants] == [
        ("fp32", ACCEPTED),
        ("int8-static", ACCEPTED),
        ("int8-dynamic-per-channel", ACCEPTED),
        ("fp16", ACCEPTED),
    ], [v.reason for v in result.variants]
    assert result.written == {"oldnet": [1, 2, 3, 4]}
    config = read_model(root / "repo", "oldnet").config
    # batch fixed in the model and the recipe silent on batching: served without batching
    assert config.max_batch_size == 0
    assert [(i.name, list(i.dims)) for i in config.input] == [(INPUT, SHAPE)]
    assert [(o.name, list(o.dims)) for o in config.output] == [(OUTPUT, [1, 10])]


def test_weights_are_initializers_and_int8_versions_hold_them_quantized(old_build):
    root, _ = old_build
    sizes = {}
    for version in (1, 2, 3, 4):
        model = onnx.load(str(root / "repo" / "oldnet" / str(version) / "model.onnx"))
        assert [i.name for i in model.graph.input] == [INPUT], version  # no weight left as an input
        assert model.ir_version >= 4
        sizes[version] = (root / "repo" / "oldnet" / str(version) / "model.onnx").stat().st_size
        int8 = sum(
            int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8
        )
        if version in (2, 3):  # the conv weights (~56 k parameters) are stored as INT8
            assert int8 > 50_000, version
    assert sizes[2] < 0.35 * sizes[1] and sizes[3] < 0.35 * sizes[1]
    assert sizes[4] < 0.6 * sizes[1]


def test_lineage_records_the_normalization_and_the_opset_conversions(old_build):
    root, _ = old_build
    weights = len(onnx.load(str(root / "project" / "model.onnx")).graph.initializer)
    for version in (1, 2, 3, 4):
        first = lineage(root, version)["steps"][0]
        assert first["name"] == "normalize-onnx"
        assert first["params"]["removed_initializer_inputs"] == weights
        assert first["params"]["ir_version"] == {"from": 3, "to": 4}
        assert first["params"]["verified_shapes"][0]["max_abs_error"] == 0.0
    fp32_steps = [s["name"] for s in lineage(root, 1)["steps"]]
    assert "convert-opset" not in fp32_steps  # opset 9 is fine for the FP32 graph optimization
    conversions = {}
    for version in (2, 3):
        step = next(s for s in lineage(root, version)["steps"] if s["name"] == "convert-opset")
        conversions[version] = (step["params"]["from"], step["params"]["to"])
        assert step["params"]["tool"] == "onnx.version_converter"
        assert (
            step["params"]["verified_shapes"] and step["params"]["verified_shapes"][0]["max_abs_error"] < 1e-5
        )
    # per-channel static QDQ needs per-axis DequantizeLinear (opset 13); dynamic INT8 needs 11
    assert conversions == {2: (9, 13), 3: (9, 11)}
    static = onnx.load(str(root / "repo" / "oldnet" / "2" / "model.onnx"))
    assert normalize.onnx_opset(static) == 13


def test_fixed_batch_validation_runs_every_sample_of_the_npz(old_build):
    _, result = old_build
    # the last label is wrong on purpose: exactly 23/24 only if all 24 samples were evaluated
    assert result.baseline.evaluation.primary.value == pytest.approx((SAMPLES - 1) / SAMPLES)
    assert result.variants[0].evaluation.primary.value == pytest.approx((SAMPLES - 1) / SAMPLES)


def test_nothing_appears_where_the_user_runs_the_build(old_build):
    root, _ = old_build
    assert list((root / "cwd").iterdir()) == []


def test_latency_rule_is_recorded_for_each_variant(old_build):
    root, result = old_build
    by_name = {v.name: v for v in result.variants}
    assert by_name["fp32"].performance.objective.value == "latency"
    assert [c.batch_size for c in by_name["fp32"].performance.comparisons] == [1]
    assert by_name["fp16"].performance.objective.value == "size"
    assert by_name["fp16"].performance.comparisons == ()
    recorded = lineage(root, 2)["performance"]
    assert recorded["objective"] == "latency" and recorded["accepted"] is True
    assert recorded["latency_vs_fp32_export"][0]["ratio"] <= 1 + recorded["tolerance"]


# -- served through the real gateway, REST and gRPC ----------------------------------------------


@pytest.fixture(scope="module")
def served(old_build, local_triton, tmp_path_factory):
    from tritium.gateway.settings import load_settings
    from tritium.serving.ports import free_port

    root, _ = old_build
    triton = local_triton(root / "repo", models=["oldnet"])
    assert triton.failed_models == {}
    work = tmp_path_factory.mktemp("old-onnx-gateway")
    routes = {
        "routes": {
            "oldnet": {"targets": [{"alias": "stable", "model": "oldnet", "version": "2", "weight": 100}]}
        }
    }
    (work / "routes.yaml").write_text(yaml.safe_dump(routes))
    gateway = RunningGateway(
        load_settings(
            http_port=free_port("127.0.0.1"),
            grpc_port=0,
            triton_http_url=triton.http_address,
            triton_grpc_url=triton.grpc_url,
            route_file=work / "routes.yaml",
            admin_token="old-onnx-test",
        )
    )
    gateway.start()
    yield root / "repo", gateway
    gateway.stop()
    triton.stop()
    forget_gateway_series("oldnet")


def forget_gateway_series(model: str) -> None:
    """Drop this test's series from the gateway's metrics, which live in the process-wide registry.

    Every in-process gateway started later in the session exposes that registry; a leftover model
    would show up in their /metrics (the dashboards' model variable would pick it up).
    """
    from tritium.gateway import metrics

    for metric in (metrics.REQUESTS, metrics.REQUEST_DURATION, metrics.UPSTREAM_DURATION):
        series = {
            tuple(sample.labels.values())
            for family in metric.collect()
            for sample in family.samples
            if sample.labels.get("model") == model and "le" not in sample.labels
        }
        for labels in series:
            metric.remove(*labels)


def infer(protocol: str, url: str, image: np.ndarray, version: str = "") -> np.ndarray:
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(url)
    try:
        tensor = module.InferInput(INPUT, list(image.shape), "FP32")
        tensor.set_data_from_numpy(image)
        answer = client.infer(
            "oldnet", [tensor], model_version=version, outputs=[module.InferRequestedOutput(OUTPUT)]
        )
        return answer.as_numpy(OUTPUT)
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_served_answers_equal_onnxruntime_in_process(served, protocol):
    repository, gateway = served
    url = gateway.grpc_url if protocol == "grpc" else gateway.http_url
    images = np.random.default_rng(5).normal(size=(3, *SHAPE)).astype(np.float32)
    for version in (1, 2, 3, 4):
        session = ort.InferenceSession(
            str(repository / "oldnet" / str(version) / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        for image in images:
            expected = session.run([OUTPUT], {INPUT: image})[0]
            got = infer(protocol, url, image, str(version))
            assert got.shape == (1, 10)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # the routed name (no version: the route's stable target, version 2) answers like version 2
    session = ort.InferenceSession(
        str(repository / "oldnet" / "2" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    np.testing.assert_allclose(
        infer(protocol, url, images[0]), session.run([OUTPUT], {INPUT: images[0]})[0], rtol=1e-5, atol=1e-6
    )


# -- the latency rule ------------------------------------------------------------------------------


def test_latency_rule_rejects_dynamic_int8_on_a_conv_net(tmp_path):
    recipe = write_old_project(
        tmp_path / "p", variants=[{"kind": "onnx-fp32"}, {"kind": "onnx-int8-dynamic", "per_channel": True}]
    )
    result = build_recipe(
        recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False
    )
    fp32, dynamic = result.variants
    assert fp32.status == ACCEPTED
    # accurate enough (the accuracy gate passes it) but slower: ConvInteger has no fast CPU kernels
    assert dynamic.decision.accepted
    assert dynamic.status == REJECTED
    slowest = dynamic.performance.slowest
    assert slowest.ratio > 1 + load_recipe(recipe).recipe.performance.tolerance
    assert dynamic.reason.startswith("objective latency: ")
    assert f"{slowest.ratio:.2f}x the FP32 export's latency at batch 1" in dynamic.reason
    assert result.written == {"oldnet": [1]}
    assert any("dynamic INT8" in w and "conv-heavy" in w and "onnx-int8-static" in w for w in result.warnings)
    report = json.loads(result.reports["json"].read_text())
    assert report["variants"][1]["performance"]["accepted"] is False
    assert report["warnings"] == result.warnings


# -- errors that keep their point --------------------------------------------------------------------


def test_a_batch_axis_declared_for_a_fixed_batch_model_names_the_fix(tmp_path):
    recipe = write_old_project(
        tmp_path / "p",
        inputs=[{"name": INPUT, "dtype": "FP32", "shape": ["batch", 3, 32, 32]}],
        variants=[{"kind": "onnx-fp32"}],
    )
    with pytest.raises(ModelSourceError) as info:
        build_recipe(recipe, repository=tmp_path / "repo", output_dir=tmp_path / "o", show_progress=False)
    text = str(info.value)
    assert f"the ONNX model fixes axis 0 of input '{INPUT}' to 1" in text
    assert "declare shape [1, 3, 32, 32] in the recipe" in text and "max_batch_size 0" in text
    assert "forward()" not in text


def test_normalize_leaves_a_current_model_alone(tmp_path):
    path = write_old_onnx(tmp_path / "m.onnx", ir_version=8, opset=13)
    model = onnx.load(str(path))
    # IR 8 may still list weights as inputs (allowed, pointless): they are dropped all the same
    assert normalize.initializer_inputs(model)
    recipe = write_old_project(tmp_path / "p", variants=[{"kind": "onnx-fp32"}])
    loaded = load_recipe(recipe).recipe
    normalized = normalize.normalize_onnx(path, loaded, tmp_path / "n.onnx")
    assert normalized.steps[0].params["ir_version"] == {"from": 8, "to": 8}
    again = normalize.normalize_onnx(normalized.path, loaded, tmp_path / "n2.onnx")
    assert again.path == normalized.path and again.steps == ()


def test_an_underlying_error_keeps_its_decisive_end(tmp_path):
    from tritium.errors import cause_text

    session = ort.InferenceSession(
        str(write_old_onnx(tmp_path / "m.onnx")), providers=["CPUExecutionProvider"]
    )
    with pytest.raises(Exception) as info:
        session.run(None, {INPUT: np.zeros((2, 3, 32, 32), np.float32)})
    text = cause_text(info.value)
    # onnxruntime puts the point on the second line: which index, what it got, what it expected
    assert "Got invalid dimensions for input: image/0" in text
    assert "index: 0 Got: 2 Expected: 1" in text
    assert "\n" not in text
    short = cause_text(info.value, limit=90)
    assert len(short) == 90 and " … " in short
    assert short.startswith("InvalidArgument: [ONNXRuntimeError]")
    assert short.endswith("Please fix either the inputs/outputs or the model.")
