"""deploy/grafana: the dashboards are up to date with their generator, well formed, query only
metrics that exist, and the provisioning files point Grafana at them and at Prometheus."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.conftest import GRAFANA_DIR, PROMETHEUS_DIR
from tests.deploy.contract import (
    PROMETHEUS_METRICS,
    TRITON_METRICS,
    gateway_metric_names,
    metric_names_in,
    recording_rules,
)
from tests.deploy.grafana_dashboards import (
    BUILTIN_VARIABLES,
    DASHBOARD_DIR,
    dashboards,
    generator_module,
    panel_queries,
    panels,
    variables_in,
)

EXPECTED = {"tritium-overview", "tritium-rollouts", "tritium-triton"}


def test_the_three_dashboards_exist() -> None:
    assert set(dashboards()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dashboard_json_is_what_the_generator_writes(name: str) -> None:
    pytest.importorskip("grafana_foundation_sdk", reason="the dev extra installs grafana-foundation-sdk")
    generator = generator_module()
    assert (DASHBOARD_DIR / f"{name}.json").read_text() == generator.render(name), (
        "dashboards are stale: run python deploy/grafana/generate_dashboards.py"
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dashboard_is_well_formed(name: str) -> None:
    board = dashboards()[name]
    assert board["uid"] == name
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    defined = {v["name"] for v in board["templating"]["list"]}
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "tritium-prometheus"}, panel["title"]
        assert panel.get("description"), f"{panel['title']}: say how to read it"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = variables_in(target["expr"]) | variables_in(panel["title"])
            assert used <= defined | BUILTIN_VARIABLES, f"{panel['title']}: undefined {used - defined}"
        if "repeat" in panel:
            assert panel["repeat"] in defined
    for variable in board["templating"]["list"]:
        assert variables_in(variable["query"]) <= defined - {variable["name"]}


def test_panels_query_only_metrics_that_exist() -> None:
    known = (
        gateway_metric_names()
        | TRITON_METRICS
        | PROMETHEUS_METRICS
        | set(recording_rules(PROMETHEUS_DIR / "rules"))
    )
    queries = panel_queries()
    assert len(queries) >= 30
    for query in queries:
        unknown = metric_names_in(query.expr) - known
        assert not unknown, f"{query.name} uses {sorted(unknown)}"


def test_dashboards_cover_the_issue() -> None:
    exprs = "\n".join(q.expr for q in panel_queries())
    for needle in (
        "tritium_gateway_request_duration_seconds:p99",  # latency percentiles
        "tritium_gateway_request_errors:ratio",  # errors
        "tritium_gateway_canary_weight",  # canary
        "tritium_gateway_shadow_errors:ratio",  # shadow
        "nv_inference_queue_seconds_per_request",  # queue vs compute
        "nv_inference_compute_seconds_per_request",
        "nv_inference_batch_size:avg",  # batch size
        "nv_inference_busy_instances",  # instance utilisation
    ):
        assert needle in exprs, needle
    rollouts = dashboards()["tritium-rollouts"]
    assert any(p.get("repeat") == "variant" for p in panels(rollouts)), "variants side by side"


def test_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert source["uid"] == "tritium-prometheus" and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "tritium.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/tritium"
