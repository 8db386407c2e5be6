"""The admin API: auth, validated atomic changes persisted to the route file, audit, model control."""

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY

from tests.gateway.ab_routes import CANARY_READY_ROUTES, ECHO_BODY
from tritium.gateway.error_mapping import VARIANT_HEADER

ADMIN_TOKEN = "test-admin-token"  # the token the gateway_factory fixture configures

ROUTES = CANARY_READY_ROUTES
BODY = ECHO_BODY
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}", "x-tritium-actor": "tester"}


@pytest.fixture
def gw(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    return gateway_factory()


def variants(gw, n=30) -> set[str]:
    with httpx.Client(base_url=gw.url) as client:
        return {client.post("/v2/models/echo/infer", json=BODY).headers[VARIANT_HEADER] for _ in range(n)}


def file_weights(path) -> dict[str, int]:
    route = yaml.safe_load(path.read_text())["routes"]["echo"]
    return {t["alias"]: t["weight"] for t in route["targets"]}


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"authorization": "Bearer wrong"}, 403), ({"authorization": "Basic abc"}, 401)],
)
def test_without_valid_token_nothing_changes(gw, tmp_path, headers, status):
    before = (tmp_path / "routes.yaml").read_text()
    answer = httpx.post(
        f"{gw.url}/admin/routes/echo/weights", json={"weights": {"stable": 0, "canary": 100}}, headers=headers
    )
    assert answer.status_code == status and "error" in answer.json()
    assert httpx.get(f"{gw.url}/admin/routes", headers=headers).status_code == status
    assert (tmp_path / "routes.yaml").read_text() == before
    assert variants(gw) == {"stable"}


def test_admin_disabled_without_configured_token(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(admin_token=None)
    answer = httpx.get(f"{gw.url}/admin/routes", headers={"authorization": "Bearer anything"})
    assert answer.status_code == 403 and "disabled" in answer.json()["error"]


def test_set_weights_applies_persists_audits_and_counts(gw, tmp_path):
    labels = {"model": "echo", "action": "set-weights"}
    before = REGISTRY.get_sample_value("tritium_gateway_route_changes_total", labels) or 0
    answer = httpx.post(
        f"{gw.url}/admin/routes/echo/weights", json={"weights": {"stable": 0, "canary": 100}}, headers=AUTH
    )
    assert answer.status_code == 200, answer.text
    assert variants(gw) == {"canary"}
    assert file_weights(tmp_path / "routes.yaml") == {"stable": 0, "canary": 100}
    assert REGISTRY.get_sample_value("tritium_gateway_route_changes_total", labels) == before + 1
    records = httpx.get(f"{gw.url}/admin/audit", headers=AUTH).json()["records"]
    assert records[-1]["action"] == "set-weights" and records[-1]["who"].startswith("tester@")
    assert records[-1]["detail"] == "stable=0, canary=100" and records[-1]["at"].endswith("Z")
    audit_lines = (tmp_path / "routes.yaml.audit.jsonl").read_text().splitlines()
    assert '"set-weights"' in audit_lines[-1]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"stable": 60, "canary": 30}, "add up to 100"),
        ({"blue": 100}, "unknown target alias"),
        ({"stable": 101}, "weights.stable"),
    ],
)
def test_invalid_weights_are_400_and_change_nothing(gw, tmp_path, weights, message):
    before = (tmp_path / "routes.yaml").read_text()
    answer = httpx.post(f"{gw.url}/admin/routes/echo/weights", json={"weights": weights}, headers=AUTH)
    assert answer.status_code == 400 and message in answer.json()["error"]
    assert (tmp_path / "routes.yaml").read_text() == before


def test_route_to_a_model_triton_does_not_serve_is_refused(gw, tmp_path):
    route = {"targets": [{"alias": "stable", "model": "ghost", "version": "1", "weight": 100}]}
    answer = httpx.put(f"{gw.url}/admin/routes/ghost", json=route, headers=AUTH)
    assert answer.status_code == 409 and "not ready in Triton" in answer.json()["error"]
    assert "ghost" not in yaml.safe_load((tmp_path / "routes.yaml").read_text())["routes"]


def test_put_show_delete_route(gw, tmp_path):
    route = {
        "targets": [{"alias": "v4", "model": "echo", "version": "4", "weight": 100}],
        "sticky_header": "x-team",
    }
    assert httpx.put(f"{gw.url}/admin/routes/slow", json=route, headers=AUTH).status_code == 200
    shown = httpx.get(f"{gw.url}/admin/routes/slow", headers=AUTH).json()
    assert shown["route"]["targets"][0]["version"] == "4" and shown["route"]["sticky_header"] == "x-team"
    answer = httpx.post(f"{gw.url}/v2/models/slow/infer", json=BODY)
    assert answer.headers[VARIANT_HEADER] == "v4" and answer.json()["outputs"][0]["data"] == [4.0] * 4
    assert httpx.delete(f"{gw.url}/admin/routes/slow", headers=AUTH).status_code == 200
    assert httpx.get(f"{gw.url}/admin/routes/slow", headers=AUTH).status_code == 404
    assert "slow" not in yaml.safe_load((tmp_path / "routes.yaml").read_text())["routes"]


def test_malformed_admin_body_is_400(gw):
    answer = httpx.post(
        f"{gw.url}/admin/routes/echo/weights",
        content=b"{not json",
        headers={**AUTH, "content-type": "application/json"},
    )
    assert answer.status_code == 400 and answer.json()["error"].startswith("invalid request")


def test_models_index_and_load_via_grpc_control(gw):
    index = httpx.get(f"{gw.url}/admin/models", headers=AUTH).json()["models"]
    assert {"echo"} <= {m["name"] for m in index}
    assert httpx.post(f"{gw.url}/admin/models/echo/load", headers=AUTH, timeout=60).status_code == 200
    answer = httpx.post(f"{gw.url}/admin/models/ghost/load", headers=AUTH, timeout=60)
    assert answer.status_code == 404 and "no model 'ghost' in Triton's repository" in answer.json()["error"]


@pytest.mark.parametrize("path", ["/admin/docs", "/admin/openapi.json"])
def test_api_docs_need_the_admin_token(gw, path):
    assert httpx.get(f"{gw.url}{path}").status_code == 401
    assert httpx.get(f"{gw.url}{path}", headers={"authorization": "Bearer wrong"}).status_code == 403
    answer = httpx.get(f"{gw.url}{path}", headers=AUTH)
    assert answer.status_code == 200
    assert "/admin/routes/{model}/weights" in answer.text  # the spec (embedded in the docs page)
    assert "/v2/models/{model}/infer" in answer.text  # every route, not only the admin API's


def test_api_docs_are_off_when_the_admin_api_is(gateway_factory, tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(ROUTES))
    gw = gateway_factory(admin_token=None)
    assert httpx.get(f"{gw.url}/admin/docs").status_code == 403
    assert httpx.get(f"{gw.url}/admin/openapi.json").status_code == 403


def test_put_with_if_match_changes_the_route_only_if_nobody_changed_it_since(gw):
    shown = httpx.get(f"{gw.url}/admin/routes/echo", headers=AUTH).json()
    etag = shown["etag"]
    other = {"targets": [{"alias": "stable", "model": "echo", "version": "2", "weight": 100}]}
    changed = httpx.put(f"{gw.url}/admin/routes/echo", json=other, headers={**AUTH, "if-match": etag})
    assert changed.status_code == 200 and changed.json()["etag"] != etag
    stale = httpx.put(f"{gw.url}/admin/routes/echo", json=shown["route"], headers={**AUTH, "if-match": etag})
    assert stale.status_code == 409 and "no longer the one" in stale.json()["error"]
    assert (
        httpx.get(f"{gw.url}/admin/routes/echo", headers=AUTH).json()["route"]["targets"][0]["version"] == "2"
    )
    # a route that does not exist yet: `"absent"` creates it once
    new = httpx.put(f"{gw.url}/admin/routes/fresh", json=other, headers={**AUTH, "if-match": '"absent"'})
    again = httpx.put(f"{gw.url}/admin/routes/fresh", json=other, headers={**AUTH, "if-match": '"absent"'})
    assert (new.status_code, again.status_code) == (200, 409)


def test_a_held_route_refuses_new_canaries_until_its_lease_ends(gw):
    import time

    route = httpx.get(f"{gw.url}/admin/routes/echo", headers=AUTH).json()["route"]
    held = {**route, "hold": {"by": "release 20261127-abc", "until": time.time() + 60}}
    assert httpx.put(f"{gw.url}/admin/routes/echo", json=held, headers=AUTH).status_code == 200
    refused = httpx.post(f"{gw.url}/admin/routes/echo/canary", json={}, headers=AUTH)
    assert refused.status_code == 409 and "held by release 20261127-abc" in refused.json()["error"]
    expired = {**route, "hold": {"by": "release 20261127-abc", "until": time.time() - 1}}
    assert httpx.put(f"{gw.url}/admin/routes/echo", json=expired, headers=AUTH).status_code == 200
    assert httpx.post(f"{gw.url}/admin/routes/echo/canary", json={}, headers=AUTH).status_code == 200
    bad = {**route, "hold": {"by": "x\ny", "until": 5}}
    assert httpx.put(f"{gw.url}/admin/routes/echo", json=bad, headers=AUTH).status_code == 400


def test_a_dry_run_put_checks_everything_and_changes_nothing(gw, tmp_path):
    before = (tmp_path / "routes.yaml").read_text()
    ok = {"targets": [{"alias": "stable", "model": "echo", "version": "2", "weight": 100}]}
    checked = httpx.put(f"{gw.url}/admin/routes/echo?dry_run=true", json=ok, headers=AUTH)
    assert checked.status_code == 200 and checked.json()["dry_run"] is True
    missing = {"targets": [{"alias": "stable", "model": "nosuch", "version": "1", "weight": 100}]}
    refused = httpx.put(f"{gw.url}/admin/routes/echo?dry_run=true", json=missing, headers=AUTH)
    assert refused.status_code in (404, 409) and "nosuch" in refused.json()["error"]
    assert (tmp_path / "routes.yaml").read_text() == before
    assert (
        httpx.get(f"{gw.url}/admin/routes/echo", headers=AUTH).json()["route"]["targets"][0]["version"] == "1"
    )


@pytest.mark.parametrize(
    ("params", "headers", "hold"),
    [
        ({}, {"if-match": "x" * 5000}, None),  # huge
        ({}, {"if-match": "\u00e9tag\u2603".encode()}, None),  # raw UTF-8 bytes
        ({"dry_run": "maybe"}, {}, None),  # wrong type
        ({}, {}, {"by": "r" * 500, "until": 9e9}),  # huge holder
        ({}, {}, {"by": "release x", "until": "tomorrow"}),  # wrong type
        ({}, {}, {"by": "release x", "until": 9e9, "extra": {"a": [[[[1]]]]}}),  # unknown, nested
        ({}, {}, "held"),  # not an object
    ],
)
def test_hostile_if_match_dry_run_and_hold_are_4xx_and_change_nothing(gw, tmp_path, params, headers, hold):
    before = (tmp_path / "routes.yaml").read_text()
    route = {"targets": [{"alias": "stable", "model": "echo", "version": "2", "weight": 100}]}
    if hold is not None:
        route["hold"] = hold
    answer = httpx.put(f"{gw.url}/admin/routes/echo", params=params, json=route, headers={**AUTH, **headers})
    assert 400 <= answer.status_code < 500 and answer.json()["error"], answer.text
    assert len(answer.json()["error"].splitlines()) == 1
    assert (tmp_path / "routes.yaml").read_text() == before
