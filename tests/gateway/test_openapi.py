"""The OpenAPI document describes every route the gateway serves, with the statuses each really
returns: compared with the app's routes, then exercised by schemathesis against a real gateway in
front of a real Triton (zero server errors, zero schema violations)."""

from __future__ import annotations

import re

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from tests.gateway.conftest import ADMIN_TOKEN, TritonServer
from tritium.gateway.admin import spec
from tritium.gateway.app import create_admin_app, create_app
from tritium.gateway.openapi import NOT_SERVED
from tritium.gateway.settings import load_settings

SPEC = spec()
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
METHODS = {"get", "post", "put", "delete", "patch"}


def _routes(routes):  # type: ignore[no-untyped-def]
    """Every route, also inside included routers (FastAPI keeps the admin router as one entry)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)
        else:
            yield route


def _served(app) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {
        (method.lower(), route.path)
        for route in _routes(app.routes)
        if isinstance(route, Route) and route.methods
        for method in route.methods
        if method.lower() in METHODS
    }


def _documented() -> set[tuple[str, str]]:
    return {(method, path) for path, operations in SPEC["paths"].items() for method in operations}


def test_every_route_is_documented_and_every_documented_route_is_served(tmp_path) -> None:
    settings_ = load_settings(route_file=tmp_path / "routes.yaml", grpc_port=None)
    served = _served(create_app(settings_)) - {("get", "/v2/{rest:path}"), ("post", "/v2/{rest:path}")}
    documented = _documented()
    assert served - documented == set(), "served but not in the OpenAPI document"
    assert documented - served == set(NOT_SERVED), "documented but not served"
    # the admin API on a port of its own serves exactly the admin part of the document
    admin_only = _served(create_admin_app(gateway=None))  # type: ignore[arg-type]
    assert admin_only == {(m, p) for m, p in documented if p.startswith("/admin/")}


def test_documented_statuses_are_the_ones_handlers_answer() -> None:
    """No FastAPI 422 (the gateway answers 400), and every error status has the error body."""
    for path, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert "422" not in statuses, (method, path)
            if path.startswith("/admin/"):
                assert {"200", "401", "403"} <= statuses, (method, path)
            for status, response in operation["responses"].items():
                if status != "200":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema["$ref"].endswith("/Error"), (method, path, status)
    infer = SPEC["paths"]["/v2/models/{model}/infer"]["post"]["responses"]
    assert {"400", "404", "408", "413", "415", "502", "503", "504"} <= set(infer)
    assert re.fullmatch(
        SPEC["paths"]["/v2/models/{model}/infer"]["post"]["parameters"][0]["schema"]["pattern"][1:-1], "echo"
    )


# --- schemathesis against the real thing ----------------------------------------------------------

schema = schemathesis.openapi.from_dict(SPEC)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ROUTES = {
    "routes": {
        "echo": {
            "targets": [
                {"alias": "stable", "model": "echo", "version": "1", "weight": 90},
                {"alias": "canary", "model": "echo", "version": "2", "weight": 10},
            ]
        }
    }
}


@pytest.fixture(scope="module")
def fuzzed_gateway(tmp_path_factory: pytest.TempPathFactory):
    """A Triton and a gateway of this module's own: the fuzzer may unload models and change routes."""
    from tests.gateway.conftest import free_port
    from tests.gateway.running import RunningGateway

    root = tmp_path_factory.mktemp("fuzzed")
    triton = TritonServer(root)
    triton.start()
    routes = root / "routes.yaml"
    routes.write_text(yaml.safe_dump(ROUTES))
    running = RunningGateway(
        load_settings(
            http_port=free_port(),
            grpc_port=None,
            triton_http_url=triton.http_url,
            triton_grpc_url=triton.grpc_url,
            route_file=routes,
            admin_token=ADMIN_TOKEN,
        )
    )
    running.start()
    yield running
    running.stop()
    triton.stop()


@schema.parametrize()
@settings(max_examples=25, suppress_health_check=list(HealthCheck), deadline=None)
def test_schemathesis_finds_no_server_error_or_schema_violation(case, fuzzed_gateway) -> None:
    """Random names, versions, headers and bodies from the document: answers are documented, 4xx
    for whatever the client got wrong (tensors Triton refuses are 400, as documented)."""
    case.call_and_validate(base_url=fuzzed_gateway.url, headers=AUTH, checks=CHECKS, timeout=30)


@schema.include(path_regex=r"^/v2/models/").parametrize()
@settings(max_examples=15, suppress_health_check=list(HealthCheck), deadline=None)
def test_schemathesis_on_the_served_model(case, fuzzed_gateway) -> None:
    """The same with the model the Triton serves, so requests reach its versions and the model."""
    case.path_parameters["model"] = "echo"
    case.call_and_validate(base_url=fuzzed_gateway.url, headers=AUTH, checks=CHECKS, timeout=30)
