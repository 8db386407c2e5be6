"""Admin API edge cases: bad canary policies, lost updates, I/O off the hot path, canary-less actions."""

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY

from tests.gateway.ab_routes import CANARY_READY_ROUTES, ECHO_BODY
from tritium.gateway import canary
from tritium.gateway import store as store_module
from tritium.gateway.error_mapping import VARIANT_HEADER
from tritium.gateway.routes import save_table

ADMIN_TOKEN = "test-admin-token"  # the token the gateway_factory fixture configures
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}", "x-tritium-actor": "tester"}
BODY = ECHO_BODY
ROUTES = CANARY_READY_ROUTES


@pytest.fixture
def gw(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    return gateway_factory()


def saved_route(tmp_path) -> dict:
    return yaml.safe_load((tmp_path / "routes.yaml").read_text())["routes"]["echo"]


def weights_of(route: dict) -> dict[str, int]:
    return {t["alias"]: t["weight"] for t in route["targets"]}


def variants(client: httpx.Client, n: int = 20) -> set[str]:
    return {client.post("/v2/models/echo/infer", json=BODY).headers[VARIANT_HEADER] for _ in range(n)}


def manual_rollbacks() -> float:
    labels = {"model": "echo", "reason": "manual"}
    return REGISTRY.get_sample_value("tritium_gateway_canary_rollbacks_total", labels) or 0


def tritium(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tritium.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **env},
    )


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"steps": [5, 50]}, "steps"),
        ({"steps": [50, 25, 100]}, "steps"),
        ({"window_s": -1}, "window_s"),
        ({"min_requests": 0}, "min_requests"),
        ({"max_p99_ratio": 0.5}, "max_p99_ratio"),
    ],
)
def test_bad_canary_policy_is_a_one_line_400_and_changes_nothing(gw, tmp_path, policy, field):
    before = (tmp_path / "routes.yaml").read_text()
    answer = httpx.post(f"{gw.url}/admin/routes/echo/canary", json=policy, headers=AUTH)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert list(body) == ["error"]
    assert body["error"].startswith(f"invalid canary policy: {field}: ") and "\n" not in body["error"]
    assert (tmp_path / "routes.yaml").read_text() == before
    assert httpx.get(f"{gw.url}/admin/routes/echo", headers=AUTH).json()["route"]["canary"] is None


def test_cli_bad_canary_settings_exit_2_with_one_line(gw, tmp_path):
    env = {"TRITIUM_GATEWAY_URL": gw.url, "TRITIUM_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    for args, field in ((("--steps", "5,50"), "steps"), (("--window", "-1"), "window_s")):
        result = tritium("routes", "canary", "start", "echo", *args, env=env)
        assert result.returncode == 2, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"invalid canary policy: {field}:" in lines[0], result.stderr
    assert saved_route(tmp_path).get("canary") is None

    # a manual rollback with nothing to roll back is a conflict (exit 5), not a change
    rolled = tritium("routes", "canary", "rollback", "echo", env=env)
    assert rolled.returncode == 5 and "no canary in progress for 'echo'" in rolled.stderr, rolled.stderr


def test_change_racing_a_controller_rollback_is_409_and_keeps_the_rollback(gw, tmp_path, monkeypatch):
    started = httpx.post(f"{gw.url}/admin/routes/echo/canary", json={"window_s": 600}, headers=AUTH)
    assert started.status_code == 200, started.text
    gateway = gw.gateway
    store = gateway.store
    real_check = gateway.check_targets

    async def controller_rolls_back_during_the_check(route):  # type: ignore[no-untyped-def]
        current = store.table.routes["echo"]
        rolled = canary.rollback(current, now=time.time(), reason="canary error rate breach")
        await store.change(
            "echo",
            "canary-rollback",
            "canary-controller",
            lambda table: table.with_route("echo", rolled),
            based_on=current,
        )
        await real_check(route)

    monkeypatch.setattr(gateway, "check_targets", controller_rolls_back_during_the_check)
    answer = httpx.post(
        f"{gw.url}/admin/routes/echo/weights", json={"weights": {"stable": 50, "canary": 50}}, headers=AUTH
    )
    monkeypatch.undo()

    assert answer.status_code == 409, answer.text
    assert "changed while this change was being made" in answer.json()["error"]
    assert "retry" in answer.json()["error"]
    route = httpx.get(f"{gw.url}/admin/routes/echo", headers=AUTH).json()["route"]
    assert route["canary"]["state"] == "rolled_back" and weights_of(route) == {"stable": 100, "canary": 0}
    assert saved_route(tmp_path)["canary"]["state"] == "rolled_back"
    assert weights_of(saved_route(tmp_path)) == {"stable": 100, "canary": 0}
    actions = [r["action"] for r in httpx.get(f"{gw.url}/admin/audit", headers=AUTH).json()["records"]]
    assert actions[-2:] == ["canary-start", "canary-rollback"]
    with httpx.Client(base_url=gw.url) as client:
        assert variants(client) == {"stable"}


def test_inference_is_served_while_a_route_change_writes_the_file(gw, tmp_path, monkeypatch):
    write_started, release = threading.Event(), threading.Event()

    def held_save(table, path):  # type: ignore[no-untyped-def]
        write_started.set()
        if not release.wait(timeout=10):
            raise TimeoutError("route file write was never released")
        save_table(table, path)

    monkeypatch.setattr(store_module, "save_table", held_save)
    before = (tmp_path / "routes.yaml").read_text()
    with ThreadPoolExecutor(1) as pool:
        change = pool.submit(
            httpx.post,
            f"{gw.url}/admin/routes/echo/weights",
            json={"weights": {"stable": 0, "canary": 100}},
            headers=AUTH,
            timeout=30,
        )
        try:
            assert write_started.wait(10), "the route change never reached the file write"
            with httpx.Client(base_url=gw.url, timeout=3) as client:
                answers = [client.post("/v2/models/echo/infer", json=BODY) for _ in range(5)]
                shown = client.get("/admin/routes/echo", headers=AUTH).json()["route"]
            assert [a.status_code for a in answers] == [200] * 5
            assert {a.headers[VARIANT_HEADER] for a in answers} == {"stable"}  # old table until written
            assert weights_of(shown) == {"stable": 100, "canary": 0}
            assert (tmp_path / "routes.yaml").read_text() == before
        finally:
            release.set()
        assert change.result(timeout=30).status_code == 200
    assert weights_of(saved_route(tmp_path)) == {"stable": 0, "canary": 100}
    with httpx.Client(base_url=gw.url) as client:
        assert variants(client) == {"canary"}


def test_rollback_or_promote_without_a_canary_in_progress_is_409_and_changes_nothing(gw, tmp_path):
    def audit_actions() -> list[str]:
        return [r["action"] for r in httpx.get(f"{gw.url}/admin/audit", headers=AUTH).json()["records"]]

    def refused(action: str, last: str = "") -> None:
        before_file, before_audit = (tmp_path / "routes.yaml").read_text(), audit_actions()
        answer = httpx.post(f"{gw.url}/admin/routes/echo/canary/{action}", json={"reason": "x"}, headers=AUTH)
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"].startswith(f"no canary in progress for 'echo'{last}")
        assert (tmp_path / "routes.yaml").read_text() == before_file
        assert audit_actions() == before_audit

    counted = manual_rollbacks()
    refused("rollback")
    refused("promote")
    assert manual_rollbacks() == counted

    assert httpx.post(f"{gw.url}/admin/routes/echo/canary", json={"window_s": 600}, headers=AUTH).is_success
    assert httpx.post(f"{gw.url}/admin/routes/echo/canary/rollback", headers=AUTH).status_code == 200
    assert manual_rollbacks() == counted + 1
    refused("rollback", " (the last one was rolled_back)")
    refused("promote", " (the last one was rolled_back)")
    assert manual_rollbacks() == counted + 1
    assert saved_route(tmp_path)["canary"]["state"] == "rolled_back"
