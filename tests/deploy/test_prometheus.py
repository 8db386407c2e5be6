"""deploy/prometheus: the config and rules pass promtool, the alerts pass their unit tests, and
every name they use is a metric the gateway or Triton really exports."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.deploy.conftest import PROMETHEUS_DIR
from tests.deploy.contract import (
    PROMETHEUS_METRICS,
    TRITON_METRICS,
    alert_rules,
    gateway_metric_names,
    metric_names_in,
    recording_rules,
)

RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "tritium-rules.test.yml"
REQUIRED_ALERTS = {
    "TritiumErrorRatioOverSLO",
    "TritiumLatencyP99OverSLO",
    "TritonNotReady",
    "TritonQueueTimeGrowing",
    "TritiumCanaryRolledBack",
    "TritiumShadowErrorRatioHigh",
}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_config(promtool: str) -> None:
    result = _run(promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


def test_promtool_check_rules(promtool: str) -> None:
    files = sorted(str(p) for p in RULES_DIR.glob("*.yml"))
    result = _run(promtool, "check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_can_fail(promtool: str, tmp_path) -> None:
    """A broken threshold makes the unit tests fail: they really check the alerts."""
    rules = tmp_path / "rules"
    rules.mkdir()
    for path in RULES_DIR.glob("*.yml"):
        (rules / path.name).write_text(path.read_text().replace("> 0.01\n", "> 0.5\n"))
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    (tests_dir / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    result = _run(promtool, "test", "rules", str(tests_dir / RULE_TESTS.name))
    assert result.returncode != 0
    assert "TritiumErrorRatioOverSLO" in result.stdout + result.stderr


def test_required_alerts_exist_and_each_has_a_firing_unit_test() -> None:
    alerts = alert_rules(RULES_DIR)
    assert set(alerts) >= REQUIRED_ALERTS
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        check["alertname"]
        for case in cases
        for check in case.get("alert_rule_test", [])
        if check.get("exp_alerts")
    }
    quiet = {
        check["alertname"]
        for case in cases
        for check in case.get("alert_rule_test", [])
        if not check.get("exp_alerts")
    }
    assert set(alerts) <= fired, f"alerts without a firing test: {sorted(set(alerts) - fired)}"
    assert set(alerts) <= quiet, f"alerts without a not-firing test: {sorted(set(alerts) - quiet)}"
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"page", "warning"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_rules_use_only_exported_metric_names() -> None:
    recorded = recording_rules(RULES_DIR)
    known = gateway_metric_names() | TRITON_METRICS | PROMETHEUS_METRICS | set(recorded)
    exprs = list(recorded.values()) + [rule["expr"] for rule in alert_rules(RULES_DIR).values()]
    used = {name for expr in exprs for name in metric_names_in(expr)}
    assert {"tritium_gateway_requests_total", "nv_inference_queue_duration_us", "up"} <= used
    unknown = used - known
    assert not unknown, f"rules use metrics nobody exports: {sorted(unknown)}"


def test_recording_rules_cover_what_dashboards_and_autoscaling_need() -> None:
    recorded = recording_rules(RULES_DIR)
    for needed in (
        "model_version_variant:tritium_gateway_requests:rate1m",
        "model_version_variant:tritium_gateway_request_errors:ratio_rate1m",
        "model_variant:tritium_gateway_request_duration_seconds:p50_rate1m",
        "model_variant:tritium_gateway_request_duration_seconds:p95_rate1m",
        "model_variant:tritium_gateway_request_duration_seconds:p99_rate1m",
        "model_version:nv_inference_queue_seconds_per_request:rate1m",
        "model_version:nv_inference_compute_seconds_per_request:rate1m",
        "model_version:nv_inference_batch_size:avg_rate1m",
    ):
        assert needed in recorded


@pytest.mark.parametrize("job", ["triton", "triton-ready", "tritium-gateway"])
def test_scrape_jobs_the_rules_rely_on(job: str) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert job in {c["job_name"] for c in config["scrape_configs"]}
