"""The examples built by the real builder (digits, minilm), served by the local Triton."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tritium.serving.runtime_repo import read_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def examples(request) -> Path:
    try:
        return request.getfixturevalue("example_repository")
    except pytest.FixtureLookupError:
        pytest.skip("needs example_repository (lead)")


@pytest.fixture(scope="module")
def examples_triton(local_triton, examples):
    triton = local_triton(examples, models=["digits", "minilm"])
    assert triton.failed_models == {}
    yield triton
    triton.stop()


def served_versions(repository: Path, model: str) -> list[int]:
    return list(read_config(repository / model / "config.pbtxt").version_policy.specific.versions)


def reference(repository: Path, model: str, version: int, inputs: dict[str, np.ndarray], output: str):
    session = ort.InferenceSession(str(repository / model / str(version) / "model.onnx"))
    return session.run([output], inputs)[0]


def digits_inputs() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    images = load_digits().images[:5].astype(np.float32) / 16.0
    return {"pixels": images[:, None, :, :]}


def minilm_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 2000, size=(2, 16), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    return {"input_ids": ids, "attention_mask": mask}


CASES = {"digits": (digits_inputs, "logits", 10), "minilm": (minilm_inputs, "embedding", 384)}
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def infer(protocol: str, triton, model: str, version: int, inputs: dict[str, np.ndarray], output: str):
    if protocol == "grpc":
        module, client = grpcclient, grpcclient.InferenceServerClient(triton.grpc_url)
        kwargs = {}
    else:
        module, client = httpclient, httpclient.InferenceServerClient(triton.http_address)
        kwargs = {"binary_data": protocol == "http-binary"}
    tensors = []
    for name, array in inputs.items():
        tensor = module.InferInput(name, list(array.shape), DATATYPES[array.dtype])
        tensor.set_data_from_numpy(array, **kwargs)
        tensors.append(tensor)
    outputs = [module.InferRequestedOutput(output, **kwargs)]
    try:
        return client.infer(model, tensors, model_version=str(version), outputs=outputs).as_numpy(output)
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["http-json", "http-binary", "grpc"])
@pytest.mark.parametrize("model", ["digits", "minilm"])
def test_served_outputs_equal_onnxruntime_in_process(examples, examples_triton, model, protocol):
    make_inputs, output, width = CASES[model]
    inputs = make_inputs()
    for version in served_versions(examples, model):
        served = infer(protocol, examples_triton, model, version, inputs, output)
        expected = reference(examples, model, version, inputs, output)
        assert served.shape == (len(next(iter(inputs.values()))), width)
        np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)
