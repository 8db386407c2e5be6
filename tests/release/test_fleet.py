"""`tritium release` on a fleet: two tritonservers on one shared model repository, two gateway
processes each with its own routes, and a real Prometheus scraping both gateways. Steady client load
through both gateways the whole time, every answer checked: zero failed or wrong answers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.deploy.conftest import _tool
from tests.deploy.test_live_monitoring import Prometheus
from tests.release.clf import MODEL, SteadyLoad, write_clf_repository
from tritium.cli import main
from tritium.release.record import Outcome, ReleaseStore
from tritium.serving.models import load_model, served_versions
from tritium.serving.ports import free_port

pytestmark = pytest.mark.slow
TOKEN = "fleet-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


class GatewayProcess:
    """`tritium gateway` in a process of its own (its own metrics registry, routes and state)."""

    def __init__(self, triton, work: Path) -> None:  # type: ignore[no-untyped-def]
        self.port = free_port()
        work.mkdir(parents=True)
        routes = {
            "routes": {
                MODEL: {"targets": [{"alias": "stable", "model": MODEL, "version": "1", "weight": 100}]}
            }
        }
        (work / "routes.yaml").write_text(yaml.safe_dump(routes))
        self.log = (work / "gateway.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "tritium.cli", "gateway", "--routes", str(work / "routes.yaml"),
                "--state-dir", str(work / "state"), "--port", str(self.port), "--grpc-port", str(free_port()),
                "--triton-http", triton.http_url, "--triton-grpc", triton.grpc_url, "--log-level", "warning",
            ],
            env={**os.environ, "TRITIUM_GATEWAY_ADMIN_TOKEN": TOKEN, "TRITIUM_GATEWAY_CANARY_INTERVAL_S": "0.2",
                 "TRITIUM_GATEWAY_ROUTE_REFRESH_S": "0.2"},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/admin/routes/{MODEL}", headers=AUTH).status_code == 200:
                    break
            assert self.process.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)

    def route(self) -> dict:
        return httpx.get(f"{self.url}/admin/routes/{MODEL}", headers=AUTH).json()["route"]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture(scope="module")
def fleet(local_triton, tmp_path_factory) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    repository = write_clf_repository(tmp_path_factory.mktemp("fleet-repo") / "model_repository")
    tritons = [local_triton(repository), local_triton(repository)]  # one shared repository
    work = tmp_path_factory.mktemp("fleet")
    gateways = [GatewayProcess(t, work / f"gateway-{i}") for i, t in enumerate(tritons)]
    prometheus_work = work / "prometheus"
    prometheus_work.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "tritium-gateway", "static_configs": [{"targets": [g.url.removeprefix("http://") for g in gateways]}]}
        ],
    }  # fmt: skip
    prometheus = Prometheus(
        _tool("prometheus", "the fleet release judges canaries on Prometheus"), config, prometheus_work
    )
    prometheus.wait_ready()
    yield {
        "repository": repository,
        "tritons": tritons,
        "gateways": gateways,
        "prometheus": prometheus,
        "work": work,
    }
    prometheus.stop()
    for gateway in gateways:
        gateway.stop()


@pytest.fixture
def stack(fleet, tmp_path) -> dict:  # type: ignore[no-untyped-def]
    for triton in fleet["tritons"]:
        load_model(triton.grpc_url, MODEL, [1])  # every test starts from version 1 alone
    for gateway in fleet["gateways"]:
        route = {"targets": [{"alias": "stable", "model": MODEL, "version": "1", "weight": 100}]}
        assert httpx.put(f"{gateway.url}/admin/routes/{MODEL}", json=route, headers=AUTH).status_code == 200
    return {**fleet, "releases": tmp_path / "releases"}


def _release(stack: dict, version: int, *extra: str, tritons: list | None = None) -> int:
    argv = ["release", "--model", MODEL, "--version", str(version), "--token", TOKEN,
            "--repository", str(stack["repository"]), "--releases", str(stack["releases"]),
            "--steps", "50,100", "--window", "3", "--min-requests", "10", "--grace", "1", *extra]  # fmt: skip
    for gateway in stack["gateways"]:
        argv += ["--gateway", gateway.url]
    for triton in tritons or stack["tritons"]:
        argv += ["--triton", triton.grpc_url]
    return main(argv)


def _record(stack: dict):  # type: ignore[no-untyped-def]
    (record,) = ReleaseStore(stack["releases"]).all(MODEL)[-1:]
    return record


class HoldWatch:
    """Polls every gateway's route during a release: was it held, and did a controller act under it?"""

    def __init__(self, gateways: list[GatewayProcess]) -> None:
        self.gateways = gateways
        self.held_by: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for gateway in self.gateways:
                with contextlib.suppress(httpx.HTTPError, KeyError):
                    hold = gateway.route().get("hold")
                    if hold:
                        self.held_by.add(f"{gateway.url} {hold['by']}")
            time.sleep(0.2)

    def __enter__(self) -> HoldWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_a_fleet_release_judged_on_prometheus_is_promoted_on_every_replica(stack) -> None:
    gateways, tritons = stack["gateways"], stack["tritons"]
    with (
        SteadyLoad(gateways[0].url) as load_a,
        SteadyLoad(gateways[1].url) as load_b,
        HoldWatch(gateways) as watch,
    ):
        assert _release(stack, 2, "--prometheus", stack["prometheus"].url) == 0
    record = _record(stack)
    assert record.outcome is Outcome.PROMOTED and record.prometheus_url == stack["prometheus"].url
    assert record.gateway_urls == [g.url for g in gateways]
    parity = [d for d in record.decisions if d.phase == "parity"]
    assert {d.evidence["triton"] for d in parity} == {t.grpc_url for t in tritons} and all(
        d.ok for d in parity
    )
    steps = [d for d in record.decisions if d.phase == "canary"]
    assert [d.evidence["step"] for d in steps] == [50, 100] and all("(prometheus)" in d.reason for d in steps)
    assert steps[0].evidence["arms"]["candidate"]["requests"] >= 10
    # Prometheus scraped both gateways, so the sums it judged on are the fleet's
    assert stack["prometheus"].query('count(up{job="tritium-gateway"} == 1)')[0]["value"][1] == "2"
    for gateway in gateways:
        assert [t["version"] for t in gateway.route()["targets"]] == ["2"] and gateway.route()["hold"] is None
    for triton in tritons:
        assert served_versions(triton.grpc_url, MODEL) == ["2"]
    assert {held.split(" ", 1)[1] for held in watch.held_by} == {f"release {record.id}"}
    assert {held.split(" ", 1)[0] for held in watch.held_by} == {g.url for g in gateways}
    for load in (load_a, load_b):
        assert not load.failures and load.answers > 100, load.failures[:5]
        assert load.variants.get("candidate", 0) > 0  # each gateway really split its own traffic

    # `tritium rollback` on the fleet the record names: version 1 loaded again on every Triton,
    # every gateway routed back to it
    with SteadyLoad(gateways[0].url) as load_a, SteadyLoad(gateways[1].url) as load_b:
        assert main(["rollback", MODEL, "--token", TOKEN, "--releases", str(stack["releases"])]) == 0
        time.sleep(1.0)
    for gateway in gateways:
        assert [t["version"] for t in gateway.route()["targets"]] == ["1"]
    for triton in tritons:
        assert "1" in served_versions(triton.grpc_url, MODEL)
    assert _record(stack).outcome is Outcome.ROLLED_BACK
    assert not load_a.failures and not load_b.failures, (load_a.failures + load_b.failures)[:5]


def test_a_slow_candidate_on_the_fleet_is_rolled_back_everywhere(stack) -> None:
    gateways, tritons = stack["gateways"], stack["tritons"]
    with SteadyLoad(gateways[0].url) as load_a, SteadyLoad(gateways[1].url) as load_b:
        assert _release(stack, 3) == 9  # several gateways: the release judges on their windows added up
    record = _record(stack)
    assert record.outcome is Outcome.ROLLED_BACK and "p99" in record.decisions[-2].reason
    assert "(gateways)" in next(d for d in record.decisions if d.phase == "canary").reason
    for gateway in gateways:
        route = gateway.route()
        assert [t["version"] for t in route["targets"]] == ["1"] and route["hold"] is None
    for triton in tritons:
        assert served_versions(triton.grpc_url, MODEL) == ["1"]
    for load in (load_a, load_b):
        assert not load.failures and load.answers > 50, load.failures[:5]


def test_a_gateway_that_would_refuse_a_route_stops_the_release_before_any_gateway_changes(
    stack, capsys
) -> None:
    """The candidate is loaded on the first Triton only: the second gateway (whose Triton lacks it)
    refuses the route at the check every gateway gets first, so no gateway and no client sees it."""
    gateways = stack["gateways"]
    with SteadyLoad(gateways[0].url) as load_a, SteadyLoad(gateways[1].url) as load_b:
        assert _release(stack, 2, tritons=stack["tritons"][:1]) == 8
    err = capsys.readouterr().err
    assert "would not take the route" in err and "no gateway was changed" in err, err
    assert _record(stack).outcome is Outcome.FAILED
    for gateway in gateways:
        assert [t["version"] for t in gateway.route()["targets"]] == ["1"]
    assert served_versions(stack["tritons"][0].grpc_url, MODEL) == ["1"]
    for load in (load_a, load_b):
        assert not load.failures, load.failures[:5]
        assert set(load.variants) == {"stable"}  # no client ever saw the candidate


def test_fleet_options_are_checked(stack, capsys) -> None:
    url = stack["gateways"][0].url
    argv = ["release", "--model", MODEL, "--version", "2", "--token", TOKEN, "--repository",
            str(stack["repository"]), "--releases", str(stack["releases"])]  # fmt: skip
    assert main([*argv, "--gateway", url, "--gateway", url]) == 2
    assert "--gateway http://127.0.0.1" in capsys.readouterr().err
    assert main([*argv, "--gateway", url, "--prometheus", "prometheus:9090"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err


def test_dns_names_stand_for_every_replica_of_a_headless_service(capsys) -> None:
    from tritium.errors import UserInputError
    from tritium.release.discovery import expand

    assert expand("--triton", ["dns+127.0.0.1:8001", "10.0.0.9:8001"]) == ["127.0.0.1:8001", "10.0.0.9:8001"]
    assert expand("--gateway", ["dns+http://127.0.0.1:8082"]) == ["http://127.0.0.1:8082"]
    assert "127.0.0.1:9" in expand("--triton", ["dns+localhost:9"])
    for bad, message in (
        ("dns+nosuch.invalid:8001", "does not resolve"),
        ("dns+triton", "needs a host and a port"),
    ):
        with pytest.raises(UserInputError, match=message):
            expand("--triton", [bad])
