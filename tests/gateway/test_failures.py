"""Triton down, restarting and back: 503 with a reason, then recovery without restarting the gateway."""

import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from tritonclient.utils import InferenceServerException

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
ROUTES = {
    "routes": {"echo": {"targets": [{"alias": "stable", "model": "echo", "version": "2", "weight": 100}]}}
}
AUTH = {"authorization": "Bearer test-admin-token"}


def grpc_infer(client: grpcclient.InferenceServerClient) -> np.ndarray:
    x = grpcclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[1, 2, 3, 4]], np.float32))
    return client.infer("echo", [x]).as_numpy("y")


def eventually(check, budget_s: float = 20.0):
    deadline = time.monotonic() + budget_s
    while True:
        try:
            return check()
        except (AssertionError, InferenceServerException, httpx.HTTPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_triton_down_is_503_and_gateway_recovers(gateway_factory, own_triton, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(own_triton)
    client = grpcclient.InferenceServerClient(gw.grpc_url)
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        assert http.post("/v2/models/echo/infer", json=BODY).status_code == 200
        np.testing.assert_array_equal(grpc_infer(client), [[2, 4, 6, 8]])

        own_triton.stop()
        down = http.post("/v2/models/echo/infer", json=BODY)
        assert down.status_code == 503 and "not reachable" in down.json()["error"]
        ready = http.get("/v2/health/ready")
        assert ready.status_code == 503 and "not reachable" in ready.json()["error"]
        assert http.get("/v2/health/live").status_code == 200
        with pytest.raises(InferenceServerException) as info:
            grpc_infer(client)
        assert info.value.status() == "StatusCode.UNAVAILABLE"
        assert not client.is_server_ready()

        own_triton.start()

        def back() -> None:
            answer = http.post("/v2/models/echo/infer", json=BODY)
            assert answer.status_code == 200, answer.text
            assert answer.json()["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]

        eventually(back)
        eventually(lambda: np.testing.assert_array_equal(grpc_infer(client), [[2, 4, 6, 8]]))
        eventually(lambda: _ready(http))
    client.close()


def test_unloaded_route_target_is_503_with_reason_and_load_brings_it_back(
    gateway_factory, own_triton, tmp_path
):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(own_triton)
    with httpx.Client(base_url=gw.url, timeout=60) as http:
        assert http.post("/admin/models/echo/unload", headers=AUTH).status_code == 200
        gone = eventually(lambda: _status(http, 503))
        assert "route target stable (echo:2)" in gone.json()["error"]
        named = http.post("/v2/models/echo/versions/2/infer", json=BODY)  # the client named it: Triton's word
        assert named.status_code == 503 and "not at ready state" in named.json()["error"]
        assert http.post("/admin/models/echo/load", headers=AUTH).status_code == 200
        eventually(lambda: _status(http, 200))


def _status(http: httpx.Client, expected: int) -> httpx.Response:
    answer = http.post("/v2/models/echo/infer", json=BODY)
    assert answer.status_code == expected, answer.text
    return answer


def _ready(http: httpx.Client) -> None:
    answer = http.get("/v2/health/ready")
    assert answer.status_code == 200, answer.text
