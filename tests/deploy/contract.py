"""The metric names the rules and dashboards may use: the gateway's (read from tritium.gateway.metrics, the
module that declares them) and Triton's, plus the names the recording rules define."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

TRITON_METRICS = frozenset(
    {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_inference_pending_request_count",
    }
)
PROMETHEUS_METRICS = frozenset({"up"})
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
_METRIC = re.compile(r"\b((?:tritium_gateway|nv)_[a-z_]+|[a-z_]+:[a-z0-9_]+:[a-z0-9_]+|up)\b")


def gateway_metric_names() -> frozenset[str]:
    """Every sample name the gateway exports, from the metric objects tritium.gateway.metrics declares."""
    from prometheus_client.metrics import MetricWrapperBase

    from tritium.gateway import metrics

    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            family = value.describe()[0]
            names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return frozenset(names)


def recording_rules(rules_dir: Path) -> dict[str, str]:
    """record name -> expr, over every rule file."""
    rules = {}
    for path in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    rules[rule["record"]] = rule["expr"]
    return rules


def alert_rules(rules_dir: Path) -> dict[str, dict]:
    alerts = {}
    for path in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts[rule["alert"]] = rule
    return alerts


def metric_names_in(expr: str) -> set[str]:
    """The metric names an expression selects (label values in quotes are ignored)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    return set(_METRIC.findall(without_labels))


_COMPOSE_DEFAULT = re.compile(r"\$\{\w+:-([^}]*)\}")


def assert_gateway_settings(variables: dict[str, str]) -> None:
    """Every TRITIUM_GATEWAY_* variable names a gateway setting and parses as one (compose's
    `${VAR:-default}` taken at its default)."""
    import pytest

    from tritium.gateway.settings import ENV_PREFIX, GatewaySettings

    ours = {n: _COMPOSE_DEFAULT.sub(r"\1", v) for n, v in variables.items() if n.startswith(ENV_PREFIX)}
    unknown = [n for n in ours if n.removeprefix(ENV_PREFIX).lower() not in GatewaySettings.model_fields]
    assert not unknown, f"not gateway settings: {unknown}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ours.items():
            patch.setenv(name, value)
        GatewaySettings()
