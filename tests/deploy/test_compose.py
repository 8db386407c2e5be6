"""The full compose stack (docker-compose.yml: Triton + gateway + Prometheus + Grafana), offline:
the Compose schema, health-gated start order, and files and ports that line up."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import yaml

from tests.deploy.conftest import GRAFANA_DIR, PROMETHEUS_DIR, REPO
from tests.deploy.contract import assert_gateway_settings
from tests.serving.compose_schema import load, merge, validate

MINE = ("gateway", "prometheus", "grafana")


@pytest.fixture(scope="module")
def compose() -> dict:
    return load(REPO / "docker-compose.yml")


@pytest.fixture(scope="module")
def cpu(compose: dict) -> dict:
    return merge(compose, load(REPO / "deploy" / "compose" / "cpu.yml"))


def test_full_stack_follows_the_compose_spec(compose: dict, cpu: dict) -> None:
    validate(compose)
    validate(cpu)
    assert {"triton", *MINE} <= set(compose["services"])


def test_cpu_variant_keeps_the_whole_stack(compose: dict, cpu: dict) -> None:
    for name in MINE:
        assert cpu["services"][name] == compose["services"][name]
    assert "deploy" not in cpu["services"]["triton"]


def test_start_order_waits_for_health(compose: dict) -> None:
    services = compose["services"]
    expected = {"gateway": {"triton"}, "prometheus": {"triton", "gateway"}, "grafana": {"prometheus"}}
    for name, needs in expected.items():
        depends = services[name]["depends_on"]
        assert set(depends) == needs, name
        for dependency in needs:
            assert depends[dependency] == {"condition": "service_healthy"}
            assert services[dependency]["healthcheck"]["test"], f"{dependency} needs a healthcheck"
    for name in MINE:
        assert services[name]["healthcheck"]["test"][0] == "CMD"


def test_bind_mounts_and_build_files_exist(compose: dict) -> None:
    services = compose["services"]
    build = services["gateway"]["build"]
    assert (REPO / build["context"] / build["dockerfile"]).is_file()
    for name in MINE:
        for volume in services[name].get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


def _service_ports(compose: dict, name: str) -> set[int]:
    return {int(p.rsplit(":", 1)[1]) for p in compose["services"][name]["ports"]}


def test_prometheus_scrapes_the_compose_services(compose: dict) -> None:
    services = compose["services"]
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    assert mounts["./deploy/prometheus"] == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            assert host in services, f"{job['job_name']} scrapes unknown service {host}"
            assert int(port) in _service_ports(compose, host), f"{job['job_name']}: {host} has no port {port}"


def test_grafana_reads_provisioning_and_dashboards(compose: dict) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "tritium.yml").read_text())
    assert mounts["./deploy/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (GRAFANA_DIR / "dashboards" / home.rsplit("/", 1)[1]).is_file()
    datasource = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    url = urlparse(datasource["datasources"][0]["url"])
    assert url.hostname == "prometheus" and url.port in _service_ports(compose, "prometheus")


def test_gateway_points_at_triton_and_probes_a_real_endpoint(compose: dict) -> None:
    from tritium.gateway.app import create_app
    from tritium.gateway.settings import GatewaySettings

    gateway = compose["services"]["gateway"]
    env = gateway["environment"]
    assert env["TRITIUM_GATEWAY_TRITON_HTTP_URL"] == "triton:8000"
    assert env["TRITIUM_GATEWAY_TRITON_GRPC_URL"] == "triton:8001"
    assert env["TRITIUM_GATEWAY_ADMIN_TOKEN"] is None, "a token must come from the shell, never the file"
    assert_gateway_settings({k: str(v) for k, v in env.items() if v is not None})
    assert _service_ports(compose, "gateway") == {8080, 8081}
    probe = " ".join(gateway["healthcheck"]["test"])
    paths = {getattr(route, "path", None) for route in create_app(GatewaySettings()).routes}
    assert "/v2/health/ready" in paths and "http://127.0.0.1:8080/v2/health/ready" in probe
