"""The REST front-end against a real Triton, driven by tritonclient's own HTTP client."""

from collections import Counter

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.gateway.ab_routes import AB_ROUTES, MULTIPLIER, X
from tritium.gateway.error_mapping import VARIANT_HEADER


@pytest.fixture
def ab_gateway(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(AB_ROUTES))
    return gateway_factory(max_payload_bytes=64 * 1024, upstream_timeout_s=1.0)


def infer_input(binary: bool) -> list[httpclient.InferInput]:
    x = httpclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(X, binary_data=binary)
    return [x]


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_http_split_and_variant_matches_answer(ab_gateway, binary):
    client = httpclient.InferenceServerClient(ab_gateway.http_url)
    seen = Counter()
    for _ in range(60):
        outputs = [httpclient.InferRequestedOutput("y", binary_data=binary)]
        result = client.infer("echo", infer_input(binary), outputs=outputs)
        raw = httpx.post(
            f"{ab_gateway.url}/v2/models/echo/infer",
            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X.ravel().tolist()}]},
        )
        variant = raw.headers[VARIANT_HEADER]
        y = np.array(raw.json()["outputs"][0]["data"], dtype=np.float32)
        np.testing.assert_array_equal(y, X.ravel() * MULTIPLIER[variant])  # never the wrong variant
        seen[variant] += 1
        assert result.as_numpy("y").shape == (1, 4)
        assert float(result.as_numpy("y")[0, 0]) in (1.0, 2.0)
    assert set(seen) == {"stable", "canary"}
    client.close()


def test_binary_tensor_extension_passes_through(ab_gateway):
    client = httpclient.InferenceServerClient(ab_gateway.http_url)
    outputs = [httpclient.InferRequestedOutput("y", binary_data=True)]
    result = client.infer("echo", infer_input(True), model_version="2", outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("y"), X * 2)
    client.close()


def test_sticky_key_always_gets_the_same_variant(ab_gateway):
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}]}
    with httpx.Client(base_url=ab_gateway.url) as client:
        for user in ("alice", "bob", "carol", "dave", "erin"):
            variants = {
                client.post("/v2/models/echo/infer", json=body, headers={"x-user-id": user}).headers[
                    VARIANT_HEADER
                ]
                for _ in range(8)
            }
            assert len(variants) == 1, user


def test_named_version_and_alias_go_there(ab_gateway):
    client = httpclient.InferenceServerClient(ab_gateway.http_url)
    for version, factor in (("1", 1), ("2", 2), ("4", 4)):
        result = client.infer("echo", infer_input(False), model_version=version)
        np.testing.assert_array_equal(result.as_numpy("y"), X * factor)
    client.close()
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}]}
    answer = httpx.post(f"{ab_gateway.url}/v2/models/echo/versions/canary/infer", json=body)
    assert answer.headers[VARIANT_HEADER] == "canary"
    assert answer.json()["outputs"][0]["data"] == [2.0, 2.0, 2.0, 2.0]


def test_public_name_maps_to_another_model(ab_gateway):
    client = httpclient.InferenceServerClient(ab_gateway.http_url)
    metadata = client.get_model_metadata("digits")
    assert metadata["name"] == "digits" and metadata["inputs"][0]["name"] == "x"
    assert client.get_model_config("digits")["name"] == "digits"
    assert client.is_model_ready("digits")
    np.testing.assert_array_equal(client.infer("digits", infer_input(False)).as_numpy("y"), X * 2)
    client.close()


def test_health_metadata_and_unrouted_passthrough(ab_gateway):
    client = httpclient.InferenceServerClient(ab_gateway.http_url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "triton"
    assert client.get_model_metadata("echo")["versions"] == ["1", "2", "3", "4"]
    assert client.get_model_metadata("echo", "3")["versions"] == ["3"]
    assert client.is_model_ready("echo", "4")
    stats = client.get_inference_statistics("echo")
    assert stats["model_stats"]
    client.close()


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def test_bad_inputs_give_400_with_tritons_message(ab_gateway):
    client = httpclient.InferenceServerClient(ab_gateway.http_url)
    x = httpclient.InferInput("x", [1, 3], "FP32")
    x.set_data_from_numpy(np.ones((1, 3), np.float32))
    err = _error(lambda: client.infer("echo", [x]))
    assert err.status() == "400" and "unexpected shape for input 'x'" in err.message()
    x = httpclient.InferInput("x", [1, 4], "INT32")
    x.set_data_from_numpy(np.ones((1, 4), np.int32))
    err = _error(lambda: client.infer("echo", [x]))
    assert err.status() == "400" and "data-type is 'INT32'" in err.message()
    client.close()


@pytest.mark.parametrize(
    ("path", "status"),
    [("/v2/models/nope/infer", 404), ("/v2/models/echo/versions/9/infer", 404), ("/v2/models/nope", 404)],
)
def test_unknown_model_or_version_is_404(ab_gateway, path, status):
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    answer = (
        httpx.post(ab_gateway.url + path, json=body)
        if path.endswith("infer")
        else httpx.get(ab_gateway.url + path)
    )
    assert answer.status_code == status
    assert "unknown model" in answer.json()["error"]


def test_malformed_json_and_binary_header_are_400(ab_gateway):
    url = f"{ab_gateway.url}/v2/models/echo/infer"
    answer = httpx.post(
        url, content=b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1,'
    )
    assert (
        answer.status_code == 400
        and "invalid inference request: Input data was truncated" in answer.json()["error"]
    )
    answer = httpx.post(url, content=b'{"outputs": []}')  # refused before routing: no variant
    assert answer.status_code == 400 and "missing required field `inputs`" in answer.json()["error"]
    assert VARIANT_HEADER not in answer.headers
    for header in ("abc", "99999"):
        answer = httpx.post(
            url, content=b'{"inputs": []}', headers={"Inference-Header-Content-Length": header}
        )
        assert answer.status_code == 400
        assert "Inference-Header-Content-Length" in answer.json()["error"]


def _requests_total(metrics_text: str, **labels: str) -> float:
    family = next(
        f for f in text_string_to_metric_families(metrics_text) if f.name == "tritium_gateway_requests"
    )
    return sum(
        s.value for s in family.samples if s.name.endswith("_total") and labels.items() <= s.labels.items()
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1, 4], "data": [1, 2, 3, 4]}]}',
            "Unable to parse JSON bytes array",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3]}]}',
            "Shape does not match true shape of 'data' field",
        ),
        (
            b'{"inputs": [{"name": "nope", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}',
            "unexpected inference input 'nope'",
        ),
    ],
)
def test_body_triton_cannot_read_is_400_with_its_message_and_counted_as_400(ab_gateway, body, message):
    labels = {"model": "echo", "version": "1", "variant": "stable", "protocol": "rest"}
    with httpx.Client(base_url=ab_gateway.url) as client:
        before = client.get("/metrics").text
        answer = client.post("/v2/models/echo/versions/1/infer", content=body)
        after = client.get("/metrics").text
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]
    assert answer.headers[VARIANT_HEADER] == "stable"
    assert (
        _requests_total(after, **labels, status="400") == _requests_total(before, **labels, status="400") + 1
    )
    assert _requests_total(after, status="502") == _requests_total(before, status="502")


def test_payload_over_limit_is_413(ab_gateway):
    url = f"{ab_gateway.url}/v2/models/echo/infer"
    big = b"{" + b" " * (70 * 1024) + b"}"
    answer = httpx.post(url, content=big)
    assert answer.status_code == 413 and "limit of 65536 bytes" in answer.json()["error"]

    def chunks():
        for _ in range(70):
            yield b" " * 1024

    answer = httpx.post(url, content=chunks())  # chunked: no Content-Length to trust
    assert answer.status_code == 413


def test_upstream_timeout_is_504(ab_gateway):
    body = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}],
        "parameters": {"delay_ms": 1500},
    }
    answer = httpx.post(f"{ab_gateway.url}/v2/models/echo/versions/4/infer", json=body, timeout=10)
    assert answer.status_code == 504 and "within 1.0 s" in answer.json()["error"]


def test_model_failure_is_502_not_500(ab_gateway):
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    answer = httpx.post(f"{ab_gateway.url}/v2/models/echo/versions/3/infer", json=body)
    assert answer.status_code == 502 and "broken on purpose" in answer.json()["error"]


def test_unsupported_extension_is_a_clear_404(ab_gateway):
    answer = httpx.get(f"{ab_gateway.url}/v2/systemsharedmemory/status")
    assert answer.status_code == 404 and "not served by the gateway" in answer.json()["error"]


def test_api_keys_guard_inference_not_health(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(AB_ROUTES))
    gw = gateway_factory(api_keys=["k1", "k2"])
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    url = f"{gw.url}/v2/models/echo/infer"
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"x-api-key": "nope"}).status_code == 403
    assert httpx.post(url, json=body, headers={"authorization": "Bearer k2"}).status_code == 200
    assert httpx.get(f"{gw.url}/v2/health/ready").status_code == 200
    client = httpclient.InferenceServerClient(gw.http_url)
    result = client.infer("echo", infer_input(False), headers={"x-api-key": "k1"})
    assert result.as_numpy("y").shape == (1, 4)
    client.close()
