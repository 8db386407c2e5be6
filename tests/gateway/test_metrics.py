"""The /metrics contract the deploy/ rules and dashboards are written against."""

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from gateway import metrics

CONTRACT = {
    "tritium_gateway_requests": ("counter", {"model", "version", "variant", "protocol", "status"}),
    "tritium_gateway_request_duration_seconds": ("histogram", {"model", "variant", "protocol"}),
    "tritium_gateway_upstream_duration_seconds": ("histogram", {"model", "variant", "protocol"}),
    "tritium_gateway_in_flight_requests": ("gauge", {"protocol"}),
    "tritium_gateway_shadow_requests": ("counter", {"model", "target", "outcome"}),
    "tritium_gateway_shadow_duration_seconds": ("histogram", {"model", "target"}),
    "tritium_gateway_canary_weight": ("gauge", {"model"}),
    "tritium_gateway_canary_state": ("gauge", {"model", "state"}),
    "tritium_gateway_canary_rollbacks": ("counter", {"model", "reason"}),
    "tritium_gateway_route_changes": ("counter", {"model", "action"}),
}
ROUTES = {
    "routes": {"echo": {"targets": [{"alias": "stable", "model": "echo", "version": "1", "weight": 100}]}}
}
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


def requests_total(**labels: str) -> float:
    return REGISTRY.get_sample_value("tritium_gateway_requests_total", labels) or 0


def test_declared_metrics_match_the_contract():
    declared = {
        m._name: (m._type, set(m._labelnames))
        for m in vars(metrics).values()
        if hasattr(m, "_labelnames") and hasattr(m, "_type")
    }
    assert declared == CONTRACT
    assert metrics.BUCKETS == (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def test_metrics_endpoint_counts_requests_by_labels(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory()
    ok = {"model": "echo", "version": "1", "variant": "stable", "status": "200"}
    before_rest, before_grpc = requests_total(**ok, protocol="rest"), requests_total(**ok, protocol="grpc")
    before_404 = requests_total(model="unknown", version="", variant="direct", protocol="rest", status="404")
    before_400 = requests_total(model="echo", version="1", variant="stable", protocol="rest", status="400")
    with httpx.Client(base_url=gw.url) as client:
        for _ in range(3):
            assert client.post("/v2/models/echo/infer", json=BODY).status_code == 200
        assert client.post("/v2/models/nope/infer", json=BODY).status_code == 404
        bad = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
        assert client.post("/v2/models/echo/infer", json=bad).status_code == 400
        grpc = grpcclient.InferenceServerClient(gw.grpc_url)
        x = grpcclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.ones((1, 4), np.float32))
        grpc.infer("echo", [x])
        grpc.close()
        text = client.get("/metrics").text
    assert requests_total(**ok, protocol="rest") == before_rest + 3
    assert requests_total(**ok, protocol="grpc") == before_grpc + 1
    assert (
        requests_total(model="unknown", version="", variant="direct", protocol="rest", status="404")
        == before_404 + 1
    )
    assert (
        requests_total(model="echo", version="1", variant="stable", protocol="rest", status="400")
        == before_400 + 1
    )
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, (kind, labels) in CONTRACT.items():
        assert name in families and families[name].type == kind, name
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)
    duration = families["tritium_gateway_request_duration_seconds"]
    buckets = {s.labels["le"] for s in duration.samples if s.name.endswith("_bucket")}
    assert {"0.0005", "0.001", "10.0", "+Inf"} <= buckets
    upstream = REGISTRY.get_sample_value(
        "tritium_gateway_upstream_duration_seconds_count",
        {"model": "echo", "variant": "stable", "protocol": "rest"},
    )
    assert upstream and upstream >= 3
    assert REGISTRY.get_sample_value("tritium_gateway_in_flight_requests", {"protocol": "rest"}) == 0
    assert REGISTRY.get_sample_value("tritium_gateway_canary_state", {"model": "echo", "state": "idle"}) == 1
