"""Canary rollouts and shadow traffic end to end: real Triton versions that are healthy, broken or slow."""

import time

import httpx
import numpy as np
import pytest
import yaml
from prometheus_client import REGISTRY

from tritium.gateway.error_mapping import VARIANT_HEADER

AUTH = {"authorization": "Bearer test-admin-token"}
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}]}


def routes(canary_version: str, shadow: dict | None = None) -> dict:
    route = {
        "targets": [
            {"alias": "stable", "model": "echo", "version": "1", "weight": 100},
            {"alias": "canary", "model": "echo", "version": canary_version, "weight": 0},
        ]
    }
    if shadow:
        route["shadow"] = shadow
    return {"routes": {"echo": route}}


def start_gateway(gateway_factory, tmp_path, table):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(table))
    return gateway_factory()


def send(client: httpx.Client, n: int) -> list[httpx.Response]:
    return [client.post("/v2/models/echo/infer", json=BODY) for _ in range(n)]


def canary_of(client: httpx.Client) -> dict:
    return client.get("/admin/routes/echo", headers=AUTH).json()["route"]["canary"]


def drive_until(client: httpx.Client, state: str, budget_s: float = 30) -> dict:
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        for answer in send(client, 10):
            if answer.status_code == 200:  # never the wrong variant, whatever the weights
                factor = {"stable": 1.0, "canary": float(answer.json()["model_version"])}
                assert answer.json()["outputs"][0]["data"][0] == factor[answer.headers[VARIANT_HEADER]]
        canary = canary_of(client)
        if canary["state"] == state:
            return canary
        if canary["state"] != "progressing":
            break
    pytest.fail(f"canary did not reach {state}: {canary}")


def rollbacks(reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "tritium_gateway_canary_rollbacks_total", {"model": "echo", "reason": reason}
        )
        or 0
    )


def test_healthy_canary_progresses_to_promotion(gateway_factory, tmp_path):
    gw = start_gateway(gateway_factory, tmp_path, routes("2"))
    with httpx.Client(base_url=gw.url) as client:
        # Generous latency thresholds: this test is about progression on a noisy shared machine.
        policy = {
            "steps": [20, 50, 100],
            "window_s": 0.4,
            "min_requests": 5,
            "max_p99_ratio": 10,
            "p99_slack_ms": 250,
        }
        started = client.post("/admin/routes/echo/canary", json=policy, headers=AUTH)
        assert started.status_code == 200, started.text
        assert REGISTRY.get_sample_value("tritium_gateway_canary_weight", {"model": "echo"}) == 20
        canary = drive_until(client, "promoted")
        assert {a.headers[VARIANT_HEADER] for a in send(client, 20)} == {"canary"}
    assert (
        REGISTRY.get_sample_value("tritium_gateway_canary_state", {"model": "echo", "state": "promoted"}) == 1
    )
    assert REGISTRY.get_sample_value("tritium_gateway_canary_weight", {"model": "echo"}) == 100
    saved = yaml.safe_load((tmp_path / "routes.yaml").read_text())["routes"]["echo"]
    assert saved["canary"]["state"] == "promoted" and canary["step"] == 2
    actions = [line for line in (tmp_path / "routes.yaml.audit.jsonl").read_text().splitlines()]
    assert any('"canary-advance"' in a for a in actions) and '"canary-promote"' in actions[-1]


def test_failing_canary_rolls_back_automatically(gateway_factory, tmp_path):
    gw = start_gateway(gateway_factory, tmp_path, routes("3"))
    before = rollbacks("error_rate")
    with httpx.Client(base_url=gw.url) as client:
        policy = {"steps": [50, 100], "window_s": 30, "min_requests": 10}
        assert client.post("/admin/routes/echo/canary", json=policy, headers=AUTH).status_code == 200
        canary = drive_until(client, "rolled_back")
        assert "error rate" in canary["reason"]
        answers = send(client, 30)
        assert {a.headers[VARIANT_HEADER] for a in answers} == {"stable"}
        assert {a.status_code for a in answers} == {200}
    assert rollbacks("error_rate") == before + 1
    saved = yaml.safe_load((tmp_path / "routes.yaml").read_text())["routes"]["echo"]
    assert saved["canary"]["state"] == "rolled_back"
    assert {t["alias"]: t["weight"] for t in saved["targets"]} == {"stable": 100, "canary": 0}


def test_slow_canary_rolls_back_on_p99(gateway_factory, tmp_path):
    gw = start_gateway(gateway_factory, tmp_path, routes("4"))
    before = rollbacks("latency")
    with httpx.Client(base_url=gw.url) as client:
        send(client, 5)  # warm the stable path
        policy = {
            "steps": [50, 100],
            "window_s": 30,
            "min_requests": 10,
            "max_p99_ratio": 1.5,
            "p99_slack_ms": 30,
        }
        assert client.post("/admin/routes/echo/canary", json=policy, headers=AUTH).status_code == 200
        canary = drive_until(client, "rolled_back")
    assert "p99" in canary["reason"]
    assert rollbacks("latency") == before + 1


def test_manual_promote_and_rollback(gateway_factory, tmp_path):
    gw = start_gateway(gateway_factory, tmp_path, routes("2"))
    before = rollbacks("manual")
    with httpx.Client(base_url=gw.url) as client:
        assert (
            client.post("/admin/routes/echo/canary/promote", headers=AUTH).status_code == 409
        )  # none started
        assert (
            client.post("/admin/routes/echo/canary", json={"window_s": 600}, headers=AUTH).status_code == 200
        )
        again = client.post("/admin/routes/echo/canary", json={}, headers=AUTH)
        assert again.status_code == 400 and "already progressing" in again.json()["error"]
        rolled = client.post("/admin/routes/echo/canary/rollback", json={"reason": "looks odd"}, headers=AUTH)
        assert rolled.status_code == 200 and "looks odd" in rolled.json()["route"]["canary"]["reason"]
        assert {a.headers[VARIANT_HEADER] for a in send(client, 10)} == {"stable"}
        assert (
            client.post("/admin/routes/echo/canary", json={"window_s": 600}, headers=AUTH).status_code == 200
        )
        assert client.post("/admin/routes/echo/canary/promote", headers=AUTH).status_code == 200
        assert {a.headers[VARIANT_HEADER] for a in send(client, 10)} == {"canary"}
    assert rollbacks("manual") == before + 1


def shadow_count(target: str, outcome: str) -> float:
    labels = {"model": "echo", "target": target, "outcome": outcome}
    return REGISTRY.get_sample_value("tritium_gateway_shadow_requests_total", labels) or 0


def test_shadow_never_slows_or_changes_the_answer(gateway_factory, tmp_path):
    shadow = {"alias": "slowshadow", "model": "echo", "version": "4", "fraction": 1.0}
    gw = start_gateway(gateway_factory, tmp_path, routes("2", shadow))
    before = shadow_count("slowshadow", "ok")
    with httpx.Client(base_url=gw.url) as client:
        send(client, 3)
        latencies = []
        for _ in range(20):
            started = time.perf_counter()
            answer = client.post("/v2/models/echo/infer", json=BODY)
            latencies.append(time.perf_counter() - started)
            assert (
                answer.headers[VARIANT_HEADER] == "stable"
                and answer.json()["outputs"][0]["data"] == [1.0] * 4
            )
    assert float(np.median(latencies)) < 0.030  # the shadow version takes 100 ms per request
    deadline = time.monotonic() + 10
    while shadow_count("slowshadow", "ok") < before + 23 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert shadow_count("slowshadow", "ok") == before + 23
    assert REGISTRY.get_sample_value(
        "tritium_gateway_shadow_duration_seconds_bucket",
        {"model": "echo", "target": "slowshadow", "le": "0.025"},
    ) < REGISTRY.get_sample_value(
        "tritium_gateway_shadow_duration_seconds_count", {"model": "echo", "target": "slowshadow"}
    )


def test_shadow_errors_are_counted_not_returned(gateway_factory, tmp_path):
    shadow = {"alias": "broken", "model": "echo", "version": "3", "fraction": 1.0}
    gw = start_gateway(gateway_factory, tmp_path, routes("2", shadow))
    before = shadow_count("broken", "error")
    with httpx.Client(base_url=gw.url) as client:
        assert {a.status_code for a in send(client, 10)} == {200}
    deadline = time.monotonic() + 10
    while shadow_count("broken", "error") < before + 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shadow_count("broken", "error") == before + 10


def test_shadow_set_through_admin_api(gateway_factory, tmp_path):
    gw = start_gateway(gateway_factory, tmp_path, routes("2"))
    shadow = {"shadow": {"alias": "mirror", "model": "echo", "version": "2", "fraction": 1.0}}
    assert httpx.post(f"{gw.url}/admin/routes/echo/shadow", json=shadow, headers=AUTH).status_code == 200
    before = shadow_count("mirror", "ok")
    with httpx.Client(base_url=gw.url) as client:
        send(client, 5)
    deadline = time.monotonic() + 10
    while shadow_count("mirror", "ok") < before + 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shadow_count("mirror", "ok") == before + 5
