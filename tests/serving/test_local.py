"""The local Triton, for real: the bundled tritonserver serving the tiny repository."""

import asyncio
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tritium.errors import NotFoundError, RepositoryError
from tritium.serving import cleanup

X = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)


def ort_reference(repository, version: int, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(repository / "tiny" / str(version) / "model.onnx"))
    return session.run(["y"], {"x": x})[0]


def grpc_infer(client, x, version="", model="tiny", datatype="FP32"):
    tensor = grpcclient.InferInput("x", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return client.infer(model, [tensor], model_version=version)


@pytest.fixture(scope="module")
def grpc(tiny_triton):
    client = grpcclient.InferenceServerClient(tiny_triton.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def http(tiny_triton):
    client = httpclient.InferenceServerClient(tiny_triton.http_address)
    yield client
    client.close()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("version", [1, 2])
def test_http_inference_equals_onnxruntime(http, tiny_repository, binary, version):
    tensor = httpclient.InferInput("x", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X, binary_data=binary)
    output = httpclient.InferRequestedOutput("y", binary_data=binary)
    result = http.infer("tiny", [tensor], model_version=str(version), outputs=[output])
    np.testing.assert_allclose(result.as_numpy("y"), ort_reference(tiny_repository, version, X), rtol=1e-6)
    assert result.get_response()["model_version"] == str(version)


@pytest.mark.parametrize("version", [1, 2])
def test_grpc_inference_equals_onnxruntime(grpc, tiny_repository, version):
    result = grpc_infer(grpc, X, str(version))
    np.testing.assert_allclose(result.as_numpy("y"), ort_reference(tiny_repository, version, X), rtol=1e-6)


def test_two_versions_side_by_side_and_latest_by_default(grpc, tiny_repository):
    one, two = (grpc_infer(grpc, X, v).as_numpy("y") for v in ("1", "2"))
    assert not np.allclose(one, two)
    latest = grpc_infer(grpc, X)
    assert latest.get_response().model_version == "2"
    np.testing.assert_allclose(latest.as_numpy("y"), two)


@pytest.mark.parametrize(
    ("x", "datatype", "model", "version", "status", "message"),
    [
        (
            X.astype(np.float64),
            "FP64",
            "tiny",
            "",
            "INVALID_ARGUMENT",
            "data-type is 'FP64', but model 'tiny' expects 'FP32'",
        ),
        (
            np.zeros((1, 5), np.float32),
            "FP32",
            "tiny",
            "",
            "INVALID_ARGUMENT",
            "unexpected shape for input 'x'",
        ),
        (np.zeros((9, 4), np.float32), "FP32", "tiny", "", "INVALID_ARGUMENT", "batch-size must be <= 8"),
        (X, "FP32", "nope", "", "NOT_FOUND", "unknown model: 'nope'"),
        (X, "FP32", "tiny", "9", "NOT_FOUND", "'tiny' version 9 is not found"),
    ],
    ids=["dtype", "shape", "batch", "model", "version"],
)
def test_bad_requests_are_refused_with_a_clear_status(grpc, x, datatype, model, version, status, message):
    with pytest.raises(InferenceServerException) as info:
        grpc_infer(grpc, x, version, model=model, datatype=datatype)
    assert info.value.status() == f"StatusCode.{status}"
    assert message in info.value.message()


def test_http_bad_dtype_is_a_400(http):
    tensor = httpclient.InferInput("x", [1, 4], "INT32")
    tensor.set_data_from_numpy(np.zeros((1, 4), np.int32))
    with pytest.raises(InferenceServerException) as info:
        http.infer("tiny", [tensor])
    assert info.value.status() == "400"


def _counts(client, version: str) -> tuple[int, int]:
    stats = client.get_inference_statistics("tiny", version, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


async def test_dynamic_batching_joins_concurrent_requests(tiny_triton, grpc, tiny_repository):
    before = _counts(grpc, "1")
    client = grpcaio.InferenceServerClient(tiny_triton.grpc_url)
    try:

        async def one(i: int) -> np.ndarray:
            x = np.full((1, 4), i, np.float32)
            tensor = grpcaio.InferInput("x", [1, 4], "FP32")
            tensor.set_data_from_numpy(x)
            return (await client.infer("tiny", [tensor], model_version="1")).as_numpy("y")

        results = await asyncio.gather(*(one(i) for i in range(64)))
    finally:
        await client.close()
    inputs = np.arange(64, dtype=np.float32).repeat(4).reshape(64, 4)
    np.testing.assert_allclose(np.concatenate(results), ort_reference(tiny_repository, 1, inputs), rtol=1e-5)
    inferences, executions = (after - prior for after, prior in zip(_counts(grpc, "1"), before, strict=True))
    assert inferences == 64
    assert executions < inferences / 2, f"{executions} executions for {inferences} inferences"


def test_failing_model_is_reported_and_the_others_keep_serving(local_triton, tiny_repository_copy):
    broken = tiny_repository_copy / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    config = (tiny_repository_copy / "tiny" / "config.pbtxt").read_text().replace('"tiny"', '"broken"')
    (broken / "config.pbtxt").write_text(config.replace("versions: 2", ""))
    triton = local_triton(tiny_repository_copy)
    try:
        assert set(triton.failed_models) == {"broken"}
        assert "INVALID_PROTOBUF" in triton.failed_models["broken"]
        assert "\n" not in triton.failed_models["broken"]
        with grpcclient.InferenceServerClient(triton.grpc_url) as client:
            np.testing.assert_allclose(
                grpc_infer(client, X, "1").as_numpy("y"), ort_reference(tiny_repository_copy, 1, X)
            )
        with pytest.raises(RepositoryError, match=r"model 'broken' failed to load: .*INVALID_PROTOBUF"):
            triton.load("broken")
        with pytest.raises(NotFoundError):
            triton.load("absent")
    finally:
        triton.stop()


def test_new_version_loads_while_clients_send_without_a_failure(
    local_triton, tiny_repository_copy, write_tiny_version
):
    triton = local_triton(tiny_repository_copy)
    failures: list[str] = []
    versions_seen: set[str] = set()
    stop = threading.Event()

    def client_loop() -> None:
        with grpcclient.InferenceServerClient(triton.grpc_url) as client:
            for _ in range(100_000):
                if stop.is_set():
                    return
                try:
                    versions_seen.add(grpc_infer(client, X).get_response().model_version)
                except InferenceServerException as exc:
                    failures.append(exc.message())

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        write_tiny_version(tiny_repository_copy / "tiny", 3)
        triton.load("tiny")
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    try:
        assert failures == []
        assert versions_seen == {"2", "3"}
        with grpcclient.InferenceServerClient(triton.grpc_url) as client:
            for version in (1, 2, 3):
                y = grpc_infer(client, X, str(version)).as_numpy("y")
                np.testing.assert_allclose(y, ort_reference(tiny_repository_copy, version, X), rtol=1e-6)
            triton.load("tiny", versions=[3])
            with pytest.raises(InferenceServerException, match="version 1 is not"):
                grpc_infer(client, X, "1")
            triton.unload("tiny")
            with pytest.raises(InferenceServerException, match="unknown model"):
                grpc_infer(client, X)
    finally:
        triton.stop()


def test_stop_leaves_no_stub_and_no_shared_memory(local_triton, tiny_repository):
    triton = local_triton(tiny_repository)
    pgid = triton.process.pid
    stubs = cleanup.stub_pids(pgid)
    regions = cleanup.shm_regions_of(cleanup.group_pids(pgid))
    assert len(stubs) == 2 and regions, "one stub and one shared-memory region per loaded version"
    triton.stop()
    assert cleanup.group_pids(pgid) == []
    assert [r for r in regions if r.exists()] == []
    assert not triton.work_dir.exists()


def test_prometheus_metrics_count_the_requests(tiny_triton, grpc):
    import urllib.request

    grpc_infer(grpc, X, "2")
    with urllib.request.urlopen(tiny_triton.metrics_url, timeout=10) as response:
        text = response.read().decode()
    successes = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nv_inference_request_success{")
        and 'model="tiny"' in line
        and 'version="2"' in line
    ]
    assert successes and successes[0] >= 1


def test_a_failed_start_leaves_no_work_directory(tiny_repository):
    from tritium.serving.local import LocalTriton

    triton = LocalTriton(tiny_repository, models=["nope"])
    assert triton.work_dir is None
    with pytest.raises(NotFoundError, match="no model nope"):
        triton.__enter__()
    assert triton.process is None
    assert triton.work_dir is not None and not triton.work_dir.exists()
