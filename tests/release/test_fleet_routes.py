"""Fleet.put on two real gateways (in-process, one echo Triton): the same route on every gateway or
on none, checked first, undone where a gateway fails between the check and the change."""

from __future__ import annotations

import httpx
import pytest
import yaml

from tests.gateway.ab_routes import CANARY_READY_ROUTES
from tests.gateway.conftest import ADMIN_TOKEN
from tritium.errors import UnavailableError
from tritium.gateway.admin_client import AdminClient
from tritium.release.fleet import Fleet

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
SPLIT = {
    "targets": [
        {"alias": "stable", "model": "echo", "version": "1", "weight": 50},
        {"alias": "canary", "model": "echo", "version": "2", "weight": 50},
    ]
}


class FailingOnChange(AdminClient):
    """A gateway that passes the check but fails the change itself (it went away in between)."""

    def call(self, method, path, body=None, headers=None):  # type: ignore[no-untyped-def, override]
        if method == "PUT" and "dry_run" not in path:
            raise UnavailableError(f"the gateway at {self.url} is not reachable (injected)")
        return super().call(method, path, body, headers)


@pytest.fixture
def two_gateways(gateway_factory, tmp_path):  # type: ignore[no-untyped-def]
    gateways = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "routes.yaml").write_text(yaml.safe_dump(CANARY_READY_ROUTES))
        gateways.append(gateway_factory(route_file=tmp_path / name / "routes.yaml"))
    return gateways


def _weights(gateway) -> list[int]:  # type: ignore[no-untyped-def]
    route = httpx.get(f"{gateway.url}/admin/routes/echo", headers=AUTH).json()["route"]
    return [t["weight"] for t in route["targets"]]


def test_the_route_reaches_every_gateway(two_gateways) -> None:
    with (
        AdminClient(two_gateways[0].url, ADMIN_TOKEN) as a,
        AdminClient(two_gateways[1].url, ADMIN_TOKEN) as b,
    ):
        Fleet(["unused:8001"], [a, b]).put("echo", SPLIT)
    assert [_weights(g) for g in two_gateways] == [[50, 50], [50, 50]]


def test_a_gateway_failing_mid_change_makes_the_others_undo_it(two_gateways) -> None:
    a, b = AdminClient(two_gateways[0].url, ADMIN_TOKEN), FailingOnChange(two_gateways[1].url, ADMIN_TOKEN)
    with (
        a,
        b,
        pytest.raises(UnavailableError, match=r"could not take the route.*undone on the 1 gateway\(s\)"),
    ):
        Fleet(["unused:8001"], [a, b]).put("echo", SPLIT)
    assert [_weights(g) for g in two_gateways] == [[100, 0], [100, 0]]


def test_a_route_changed_by_someone_else_meanwhile_is_not_overwritten(two_gateways) -> None:
    """Compare-and-set: the undo only puts back a route nobody changed since the fleet changed it."""
    gateway_a = two_gateways[0]

    class OperatorMeanwhile(FailingOnChange):
        def call(self, method, path, body=None, headers=None):  # type: ignore[no-untyped-def, override]
            if method == "PUT" and "dry_run" not in path:  # an operator sets gateway a to 70/30 first
                httpx.post(
                    f"{gateway_a.url}/admin/routes/echo/weights",
                    json={"weights": {"stable": 70, "canary": 30}},
                    headers=AUTH,
                )
            return super().call(method, path, body, headers)

    a, b = AdminClient(gateway_a.url, ADMIN_TOKEN), OperatorMeanwhile(two_gateways[1].url, ADMIN_TOKEN)
    with a, b, pytest.raises(UnavailableError, match="could not undo it on"):
        Fleet(["unused:8001"], [a, b]).put("echo", SPLIT)
    assert _weights(gateway_a) == [70, 30]  # the operator's change stands
