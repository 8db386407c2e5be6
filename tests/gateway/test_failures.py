"""Triton down, restarting and back: 503 with a reason, then recovery without restarting the gateway."""

import re
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from prometheus_client import REGISTRY
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


INCIDENT = re.compile(r"internal gateway error \(logged as ([0-9a-f]{12})\)")


def test_a_gateway_bug_is_500_with_an_incident_id_and_no_internals(
    gateway_factory, tmp_path, monkeypatch, caplog
):
    """Not Triton's fault, so not 502; the details go to the log, the client gets one line to quote."""
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory()

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals\nsecond line")

    monkeypatch.setattr(gw.gateway, "decide", broken)  # a bug inside the gateway, Triton is fine
    monkeypatch.setattr(gw.gateway, "resolve", broken)
    labels = {
        "model": "echo", "version": "", "variant": "", "protocol": "rest", "status": "500",
        "outcome": "upstream_error",
    }  # fmt: skip
    before = REGISTRY.get_sample_value("tritium_gateway_requests_total", labels) or 0
    with caplog.at_level("ERROR", logger="tritium.gateway"), httpx.Client(base_url=gw.url) as client:
        infer = client.post("/v2/models/echo/infer", json=BODY)
        metadata = client.get("/v2/models/echo")
        grpc = grpcclient.InferenceServerClient(gw.grpc_url)
        with pytest.raises(InferenceServerException) as info:
            grpc_infer(grpc)
        grpc.close()
    incidents = []
    for answer in (infer, metadata):
        assert answer.status_code == 500, answer.text
        found = INCIDENT.fullmatch(answer.json()["error"])
        assert found and "secret" not in answer.text
        incidents.append(found[1])
    assert info.value.status() == "StatusCode.INTERNAL" and "secret" not in info.value.message()
    found = INCIDENT.fullmatch(info.value.message())
    assert found
    incidents.append(found[1])
    assert REGISTRY.get_sample_value("tritium_gateway_requests_total", labels) == before + 1  # as answered
    logged = {r.getMessage(): r for r in caplog.records if r.name == "tritium.gateway"}
    for incident in incidents:
        record = logged[f"internal gateway error {incident}"]
        assert "secret internals" in str(record.exc_info[1])
