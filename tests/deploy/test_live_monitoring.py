"""The monitoring stack against real software: a real Prometheus (Debian's binary) loads
deploy/prometheus (rules included) and scrapes a real local Triton and a real gateway under
traffic that includes an A/B split, a canary that is rolled back and a shadow. Then every dashboard
panel query (template variables resolved through Prometheus, repeated panels once per value),
every recording rule and the autoscaling queries must return data."""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.deploy.conftest import K8S_DIR, PROMETHEUS_DIR, REPO
from tests.deploy.contract import recording_rules
from tests.deploy.grafana_dashboards import dashboards, grafana_script, panels, substitute
from tests.gateway.running import RunningGateway

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "live-monitoring-test-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MODEL = "tiny"
RATE_INTERVAL = "30s"
TRAFFIC_S = float(os.environ.get("TRITIUM_LIVE_TRAFFIC_S", "6"))
DATA_DEADLINE_S = 60.0


class Prometheus:
    """A real Prometheus on a free loopback port, scraping every second."""

    def __init__(self, binary: str, config: dict, work_dir: Path) -> None:
        from tritium.serving.ports import free_port

        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        config_file = work_dir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.log = work_dir / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={work_dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.client = httpx.Client(timeout=10)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get(f"{self.url}/-/ready").status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready in {timeout_s} s: {self.log.read_text()[-2000:]}")

    def api(self, path: str, **params: object) -> object:
        body = self.client.get(f"{self.url}/api/v1/{path}", params=params).json()
        assert body["status"] == "success", f"{path} {params}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def prometheus_config(targets: dict[str, str]) -> dict:
    """deploy/prometheus/prometheus.yml with local targets, 1 s scrapes and absolute rule paths."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(p) for p in sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == set(targets), f"the test knows jobs {sorted(targets)}, the config has {sorted(jobs)}"
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


def _infer_body(i: int, *, broken: bool = False) -> dict:
    data = [float(i % 7), 1.0, 2.0, 3.0]
    return {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES" if broken else "FP32", "data": data}]
    }


def drive_traffic(client: httpx.Client, seconds: float, samples: dict[int, str]) -> dict[int, int]:
    """Bounded inference traffic through the gateway: mostly good requests, 1 in 25 malformed."""
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline and i < 400 * seconds:
        response = client.post(f"/v2/models/{MODEL}/infer", json=_infer_body(i, broken=i % 25 == 24))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        samples.setdefault(response.status_code, response.text[:300])
        i += 1
        time.sleep(0.004)
    return statuses


@dataclass
class Stack:
    prometheus: Prometheus
    gateway_url: str
    statuses: dict[int, int]
    samples: dict[int, str]


@pytest.fixture(scope="module")
def stack(prometheus_binary: str, local_triton, tiny_repository: Path, tmp_path_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    from tritium.gateway.settings import load_settings
    from tritium.serving.ports import free_port

    work = tmp_path_factory.mktemp("live-monitoring")
    triton = local_triton(tiny_repository)
    settings = load_settings(
        http_port=free_port("127.0.0.1"),
        grpc_port=None,
        triton_http_url=triton.http_address,
        triton_grpc_url=triton.grpc_url,
        route_file=work / "routes.yaml",
        admin_token=ADMIN_TOKEN,
        canary_interval_s=0.5,
    )
    gateway = RunningGateway(settings)
    gateway.start()
    prometheus = Prometheus(
        prometheus_binary,
        prometheus_config(
            {
                "triton": f"127.0.0.1:{triton.metrics_port}",
                "triton-ready": triton.http_address,
                "tritium-gateway": f"127.0.0.1:{gateway.http_port}",
            }
        ),
        work,
    )
    try:
        prometheus.wait_ready()
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            route = {
                "targets": [
                    {"alias": "stable", "model": MODEL, "version": "1", "weight": 100},
                    {"alias": "canary", "model": MODEL, "version": "2", "weight": 0},
                ],
                "shadow": {
                    "alias": "shadow",
                    "model": MODEL,
                    "version": "2",
                    "fraction": 0.5,
                    "compare": "cosine",
                },
            }
            response = client.put(f"/admin/routes/{MODEL}", json=route, headers=ADMIN)
            assert response.status_code == 200, response.text
            # A canary held at 50 % (a window far longer than the test), then rolled back by hand.
            canary = {"steps": [50, 100], "window_s": 3600, "min_requests": 1000000}
            response = client.post(f"/admin/routes/{MODEL}/canary", json=canary, headers=ADMIN)
            assert response.status_code == 200, response.text
            samples: dict[int, str] = {}
            statuses = drive_traffic(client, TRAFFIC_S, samples)
            response = client.post(
                f"/admin/routes/{MODEL}/canary/rollback",
                json={"reason": "live monitoring test"},
                headers=ADMIN,
            )
            assert response.status_code == 200, response.text
            for status, count in drive_traffic(client, 2.0, samples).items():
                statuses[status] = statuses.get(status, 0) + count
        yield Stack(prometheus, gateway.url, statuses, samples)
    finally:
        prometheus.stop()
        gateway.stop()
        triton.stop()


def _finite(result: list[dict]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def wait_for_data(
    prometheus: Prometheus, queries: dict[str, str], deadline_s: float = DATA_DEADLINE_S
) -> dict[str, str]:
    """Poll until every query returns a finite sample; return those that never did (name -> expr)."""
    missing = dict(queries)
    deadline = time.monotonic() + deadline_s
    while missing and time.monotonic() < deadline:
        missing = {name: expr for name, expr in missing.items() if not _finite(prometheus.query(expr))}
        if missing:
            time.sleep(1.0)
    return missing


def _variable_values(prometheus: Prometheus, query: str, chosen: dict[str, str]) -> list[str]:
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
    assert match, f"unsupported variable query {query}"
    selector, label = substitute(match.group(1), chosen), match.group(2)
    series = prometheus.api("series", **{"match[]": selector, "start": time.time() - 600})
    return sorted({s[label] for s in series if label in s})


def dashboard_queries(prometheus: Prometheus) -> dict[str, str]:
    """Every panel target of every dashboard, with variables filled in as Grafana would."""
    queries = {}
    for name, board in dashboards().items():
        chosen = {"__rate_interval": RATE_INTERVAL, "__interval": "15s", "__range": "5m"}
        options = {}
        for variable in board["templating"]["list"]:
            values = _variable_values(prometheus, variable["query"], chosen)
            assert values, f"{name}: variable {variable['name']} has no values ({variable['query']})"
            options[variable["name"]] = values
            # Pick this test's model, as a user would: the gateway's metrics live in the test process's
            # registry, so earlier gateway tests' models are listed too (with no traffic now).
            chosen[variable["name"]] = (
                variable.get("allValue", ".*")
                if variable.get("includeAll")
                else MODEL
                if MODEL in values
                else values[0]
            )
        for panel in panels(board):
            repeat = panel.get("repeat")
            for value in options[repeat] if repeat else [None]:
                filled = {**chosen, repeat: value} if repeat else chosen
                for target in panel.get("targets", []):
                    title = substitute(panel["title"], filled)
                    queries[f"{name} / {title} / {target['refId']}"] = substitute(target["expr"], filled)
    return queries


def test_gateway_served_the_traffic(stack: Stack) -> None:
    total = sum(stack.statuses.values())
    errors = sum(count for status, count in stack.statuses.items() if status >= 400)
    assert stack.statuses.get(200, 0) >= 100, stack.samples
    assert 0 < errors <= total // 20 + 1, f"only the malformed 1 in 25 fail: {stack.statuses} {stack.samples}"


def test_every_dashboard_panel_query_returns_data(stack: Stack) -> None:
    queries = dashboard_queries(stack.prometheus)
    assert len(queries) >= 40
    missing = wait_for_data(stack.prometheus, queries)
    assert not missing, "panels without data:\n" + "\n".join(f"{k}: {v}" for k, v in missing.items())


def test_a_query_without_data_is_reported(stack: Stack) -> None:
    queries = {
        "typo": 'model_version_variant:tritium_gateway_request:rate1m{model=~".*"}',
        "real": "model_version_variant:tritium_gateway_requests:rate1m",
    }
    assert wait_for_data(stack.prometheus, queries, deadline_s=3.0) == {"typo": queries["typo"]}


def test_every_recording_rule_returns_data(stack: Stack) -> None:
    records = {name: name for name in recording_rules(PROMETHEUS_DIR / "rules")}
    missing = wait_for_data(stack.prometheus, records)
    assert not missing, f"recording rules without data: {sorted(missing)}"
    groups = stack.prometheus.api("rules")["groups"]
    unhealthy = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert not unhealthy, unhealthy
    assert len(groups) == 3


def test_recorded_values_describe_the_traffic(stack: Stack) -> None:
    wait_for_data(stack.prometheus, {"rates": "model_version_variant:tritium_gateway_requests:rate1m"})
    served = {
        (s["metric"]["variant"], s["metric"]["version"])
        for s in stack.prometheus.query(
            f'model_version_variant:tritium_gateway_requests:rate1m{{model="{MODEL}"}}'
        )
    }
    assert {("stable", "1"), ("canary", "2")} <= served
    triton_versions = {
        s["metric"]["version"] for s in stack.prometheus.query(f'nv_inference_count{{model="{MODEL}"}} > 0')
    }
    assert triton_versions == {"1", "2"}, "stable, canary and shadow traffic reached both versions"
    (batch,) = stack.prometheus.query(
        f'max(model_version:nv_inference_batch_size:avg_rate1m{{model="{MODEL}"}})'
    )
    assert 1.0 <= float(batch["value"][1]) <= 8.0
    (ready,) = stack.prometheus.query('up{job="triton-ready"}')
    assert ready["value"][1] == "1", "Triton's /v2/health/ready scrapes as up"
    state = stack.prometheus.query(
        f'tritium_gateway_canary_state{{model="{MODEL}", state="rolled_back"}} == 1'
    )
    assert state, "the rollback shows in the canary state gauge"


def test_canary_rollback_alert_fires(stack: Stack) -> None:
    deadline = time.monotonic() + DATA_DEADLINE_S
    while time.monotonic() < deadline:
        alerts = stack.prometheus.api("alerts")["alerts"]
        fired = [
            a
            for a in alerts
            if a["labels"]["alertname"] == "TritiumCanaryRolledBack" and a["state"] == "firing"
        ]
        if fired:
            assert fired[0]["labels"]["model"] == MODEL
            assert fired[0]["annotations"]["summary"] == f"The canary of {MODEL} was rolled back"
            return
        time.sleep(1.0)
    pytest.fail(f"TritiumCanaryRolledBack did not fire: {stack.prometheus.api('alerts')}")


def test_autoscaling_queries_return_data(stack: Stack) -> None:
    """prometheus-adapter's metricsQuery, its template filled in as the adapter does for one pod."""
    adapter = yaml.safe_load((K8S_DIR / "prometheus-adapter" / "values.yaml").read_text())
    queries = {
        rule["name"]["as"]: rule["metricsQuery"]
        .replace("<<.LabelMatchers>>", 'job="triton"')
        .replace("<<.GroupBy>>", "instance")
        for rule in adapter["rules"]["custom"]
    }
    missing = wait_for_data(stack.prometheus, queries)
    assert not missing, missing


def test_dashboard_renders_from_live_data(stack: Stack, tmp_path: Path) -> None:
    preview = grafana_script("render_preview")
    write_docs = os.environ.get("TRITIUM_WRITE_PREVIEW") == "1"
    out = REPO / "docs" / "img" / "dashboard-overview.png" if write_docs else tmp_path / "overview.png"
    rendered = preview.render(
        preview.load_dashboard("tritium-overview"),
        preview.Prometheus(stack.prometheus.url),
        out,
        minutes=max(1.0, (TRAFFIC_S - 45) / 60),  # past the first minute, where 1m rates ramp up
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = [title for title, count in rendered.series_per_panel.items() if not count]
    assert not empty, f"panels drawn without data: {empty}"
