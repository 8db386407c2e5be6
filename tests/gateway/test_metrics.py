"""The /metrics contract the deploy/ rules and dashboards are written against."""

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tritium.gateway import metrics

CONTRACT = {
    "tritium_gateway_requests": ("counter", {"model", "version", "variant", "protocol", "status", "outcome"}),
    "tritium_gateway_request_duration_seconds": ("histogram", {"model", "variant", "protocol"}),
    "tritium_gateway_upstream_duration_seconds": ("histogram", {"model", "variant", "protocol"}),
    "tritium_gateway_in_flight_requests": ("gauge", {"protocol"}),
    "tritium_gateway_shadow_requests": ("counter", {"model", "target", "outcome"}),
    "tritium_gateway_shadow_duration_seconds": ("histogram", {"model", "target"}),
    "tritium_gateway_shadow_agreement_rows": ("counter", {"model", "target"}),
    "tritium_gateway_shadow_agreement_score": ("counter", {"model", "target"}),
    "tritium_gateway_canary_weight": ("gauge", {"model"}),
    "tritium_gateway_canary_state": ("gauge", {"model", "state"}),
    "tritium_gateway_canary_rollbacks": ("counter", {"model", "reason"}),
    "tritium_gateway_route_changes": ("counter", {"model", "action"}),
    "tritium_gateway_route_reloads": ("counter", {"outcome"}),
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
    ok = {"model": "echo", "version": "1", "variant": "stable", "status": "200", "outcome": "ok"}
    not_found = {
        "model": "other",
        "version": "",
        "variant": "direct",
        "status": "404",
        "outcome": "client_error",
    }
    invalid = {
        "model": "echo",
        "version": "1",
        "variant": "stable",
        "status": "400",
        "outcome": "client_error",
    }
    before_rest, before_grpc = requests_total(**ok, protocol="rest"), requests_total(**ok, protocol="grpc")
    before_404 = requests_total(**not_found, protocol="rest")
    before_400 = requests_total(**invalid, protocol="rest")
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
    assert requests_total(**not_found, protocol="rest") == before_404 + 1
    assert requests_total(**invalid, protocol="rest") == before_400 + 1
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


def request_label_sets() -> set[tuple]:
    return {
        tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        for family in REGISTRY.collect()
        if family.name.startswith("tritium_gateway_")
        for sample in family.samples
        if "model" in sample.labels
    }


def test_bogus_names_and_versions_do_not_create_label_sets(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(api_keys=["k1"], max_payload_bytes=1024)
    key = {"x-api-key": "k1"}
    with httpx.Client(base_url=gw.url) as client:  # warm up: every legitimate label set exists once
        client.post("/v2/models/nope/infer", json=BODY, headers=key)
        client.post("/v2/models/nope/infer", json=BODY)
    before = request_label_sets()

    grpc = grpcclient.InferenceServerClient(gw.grpc_url)
    x = grpcclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    statuses = set()
    with httpx.Client(base_url=gw.url) as client:
        for i in range(15):
            bogus = f"bogus{i}"
            answers = [
                client.post(f"/v2/models/{bogus}/infer", json=BODY),  # 401, unauthenticated
                client.post(f"/v2/models/{bogus}/infer", json=BODY, headers={"x-api-key": "wrong"}),  # 403
                client.post(f"/v2/models/{bogus}/infer", content=b"x" * 2000, headers=key),  # 413
                client.post(
                    f"/v2/models/{bogus}/infer",
                    content=b"{}",
                    headers={**key, "inference-header-content-length": "99"},
                ),  # 400 before routing
                client.post(f"/v2/models/{bogus}/infer", json=BODY, headers=key),  # 404 from Triton
                client.post(f"/v2/models/{bogus}/infer", content=b"{not json", headers=key),
                client.post(f"/v2/models/echo/versions/{bogus}/infer", json=BODY, headers=key),
                client.post(f"/v2/models/echo/versions/9{i}/infer", json=BODY, headers=key),
                client.post(f"/v2/models/{bogus}/versions/{bogus}/infer", json=BODY, headers=key),
            ]
            statuses |= {a.status_code for a in answers}
            for version in (f"1.{i}", f"1x{i}", f"{bogus}", f"0{i + 1}", "9" * (20 + i)):
                try:  # Triton's gRPC front-end answers "1.5" as version 1: the gateway refuses it first
                    grpc.infer("echo", [x], model_version=version, headers=key)
                    statuses.add(200)
                except InferenceServerException as exc:
                    statuses.add(exc.status())
    grpc.close()
    assert {401, 403, 413, 400, 404, "StatusCode.INVALID_ARGUMENT"} <= statuses and 200 not in statuses
    new = request_label_sets() - before
    assert not [labels for labels in new if any("bogus" in value or "1." in value for _, value in labels)]
    # a handful of bounded label sets ("other" model or version, per status) for 240 requests
    assert len({dict(labels)["model"] for labels in new}) <= 2, new
    assert len(new) < 40, len(new)


def test_deleted_route_drops_its_canary_gauges(gateway_factory, tmp_path):
    table = {"routes": {**ROUTES["routes"], "gone": ROUTES["routes"]["echo"]}}
    table["routes"]["gone"] = {
        "targets": [
            {"alias": "stable", "model": "echo", "version": "1", "weight": 100},
            {"alias": "canary", "model": "echo", "version": "2", "weight": 0},
        ]
    }
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(table))
    gw = gateway_factory()
    auth = {"authorization": "Bearer test-admin-token"}
    with httpx.Client(base_url=gw.url, headers=auth) as client:
        assert client.post("/admin/routes/gone/canary", json={"window_s": 600}).status_code == 200
        assert client.post("/admin/routes/gone/canary/rollback").status_code == 200
        rolled_back = {"model": "gone", "state": "rolled_back"}
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
        assert any(
            s.labels == rolled_back and s.value == 1 for s in families["tritium_gateway_canary_state"].samples
        )
        assert client.delete("/admin/routes/gone").status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    for name in ("tritium_gateway_canary_state", "tritium_gateway_canary_weight"):
        models = {s.labels["model"] for s in families[name].samples}
        assert "gone" not in models and "echo" in models, (name, models)
