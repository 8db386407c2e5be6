"""Build Tritium's Grafana dashboards with Grafana's own SDK and write them as provisioned JSON.

    python deploy/grafana/generate_dashboards.py        # rewrites deploy/grafana/dashboards/*.json

The JSON files are what Grafana loads (see provisioning/dashboards/tritium.yml); this script is their
source. tests/deploy checks the files are up to date, and evaluates every query against a real
Prometheus scraping a real Triton and gateway.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh, VariableSort

DATASOURCE_UID = "tritium-prometheus"
DATASOURCE = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
OUT_DIR = Path(__file__).parent / "dashboards"
RATE = "$__rate_interval"

# Rate windows in the recording rules are 1m; raw queries use Grafana's $__rate_interval.
GATEWAY_MODEL = 'model=~"$model"'
TRITON_SELECTOR = 'model=~"$model", version=~"$version"'


def query(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).legend_format(legend or "__auto")
    return q.instant().format("table") if instant else q.range()


class Layout:
    """Places panels left to right on Grafana's 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.next_id = 1

    def ident(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def timeseries_panel(
    title: str,
    unit: str,
    queries: list[prometheus.Dataquery],
    description: str,
    *,
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
    min_zero: bool = True,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .fill_opacity(15 if stacked else 5)
        .legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.TABLE)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI))
    )
    if stacked:
        panel = panel.stacking(common.StackingConfig().mode(StackingMode.NORMAL))
    if min_zero:
        panel = panel.min(0)
    for q in queries:
        panel = panel.with_target(q)
    return panel


def stat_panel(title: str, unit: str, expr: str, description: str, *, width: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(4)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(query(expr))
    )


def table_panel(title: str, expr: str, description: str, *, width: int = 24) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(7)
        .with_target(query(expr, instant=True))
    )


def label_variable(
    name: str, label: str, metric_selector: str, *, multi: bool = True, include_all: bool = True
) -> dashboard.QueryVariable:
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({metric_selector}, {name})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(include_all)
    )
    return variable.all_value(".*") if include_all else variable


def _base(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["tritium"])
        .editable()
        .refresh("10s")
        .time("now-30m", "now")
        .timezone("browser")
        .tooltip(1)
    )


def _with_panels(
    board: dashboard.Dashboard, layout: Layout, rows: list[tuple[str, list]]
) -> dashboard.Dashboard:
    for row_title, panels in rows:
        board = board.with_row(dashboard.Row(row_title).id(layout.ident()))
        for panel in panels:
            board = board.with_panel(panel.id(layout.ident()))
    return board


def overview() -> dashboard.Dashboard:
    layout = Layout()
    m = GATEWAY_MODEL
    board = _base(
        "tritium-overview",
        "Tritium / Overview",
        "Traffic, errors and latency of every public model, per served version and variant (gateway metrics).",
    ).with_variable(label_variable("model", "Model", "tritium_gateway_requests_total"))
    rows = [
        (
            "Now",
            [
                stat_panel(
                    "Requests/s",
                    "reqps",
                    f"sum(model_version_variant:tritium_gateway_requests:rate1m{{{m}}})",
                    "Inference requests per second through the gateway, all protocols.",
                ),
                stat_panel(
                    "Error ratio",
                    "percentunit",
                    f"sum(model_version_variant:tritium_gateway_request_errors:rate1m{{{m}}})"
                    f' / sum(rate(tritium_gateway_requests_total{{{m},outcome!="client_error"}}[{RATE}]))',
                    "Share of the requests that reached a model and failed on the serving side (the model, "
                    "Triton or the gateway) over the last minute. Client errors never count. SLO: at most 1 %.",
                ),
                stat_panel(
                    "Worst p99",
                    "s",
                    f"max(model:tritium_gateway_request_duration_seconds:p99_rate1m{{{m}}})",
                    "The highest per-model p99 latency in the gateway. SLO: at most 500 ms.",
                ),
                stat_panel(
                    "In flight",
                    "short",
                    "sum(tritium_gateway_in_flight_requests)",
                    "Requests inside the gateway right now (REST + gRPC).",
                ),
            ],
        ),
        (
            "Traffic and errors",
            [
                timeseries_panel(
                    "Requests/s by model, version and variant",
                    "reqps",
                    [
                        query(
                            f"model_version_variant:tritium_gateway_requests:rate1m{{{m}}}",
                            "{{model}} v{{version}} ({{variant}})",
                        )
                    ],
                    "Where traffic goes: one line per served version and route variant (stable, canary, A/B arm).",
                    stacked=True,
                ),
                timeseries_panel(
                    "Requests/s by outcome and status",
                    "reqps",
                    [
                        query(
                            f"sum by (model, outcome, status) (rate(tritium_gateway_requests_total{{{m}}}[{RATE}]))",
                            "{{model}} {{outcome}} {{status}}",
                        )
                    ],
                    "Outcome and HTTP status of the answers (gRPC codes are counted as their HTTP equivalent). "
                    "client_error is the client's doing and never counts; upstream_error counts against the SLO. "
                    'Names the gateway does not know are gathered as model="other".',
                    stacked=True,
                ),
                timeseries_panel(
                    "Error ratio by model, version and variant",
                    "percentunit",
                    [
                        query(
                            f"model_version_variant:tritium_gateway_request_errors:ratio_rate1m{{{m}}}",
                            "{{model}} v{{version}} ({{variant}})",
                        )
                    ],
                    "Share of failed requests (upstream errors) among those that reached each served version. "
                    "The alert TritiumErrorRatioOverSLO fires above 1 % for 5 minutes.",
                    width=24,
                ),
            ],
        ),
        (
            "Latency",
            [
                timeseries_panel(
                    "Latency percentiles by model and variant",
                    "s",
                    [
                        query(
                            f"model_variant:tritium_gateway_request_duration_seconds:p50_rate1m{{{m}}}",
                            "p50 {{model}} ({{variant}})",
                            "A",
                        ),
                        query(
                            f"model_variant:tritium_gateway_request_duration_seconds:p95_rate1m{{{m}}}",
                            "p95 {{model}} ({{variant}})",
                            "B",
                        ),
                        query(
                            f"model_variant:tritium_gateway_request_duration_seconds:p99_rate1m{{{m}}}",
                            "p99 {{model}} ({{variant}})",
                            "C",
                        ),
                    ],
                    "Time in the gateway per request, from its histograms (Triton itself only exports sums). "
                    "A p99 far above p50 means queueing or a slow minority of inputs.",
                ),
                timeseries_panel(
                    "Gateway overhead vs Triton time",
                    "s",
                    [
                        query(
                            f"model_variant:tritium_gateway_overhead_seconds:mean_rate1m{{{m}}}",
                            "gateway {{model}} ({{variant}})",
                            "A",
                        ),
                        query(
                            f"sum by (model, variant) (rate(tritium_gateway_upstream_duration_seconds_sum{{{m}}}[{RATE}]))"
                            f" / sum by (model, variant) (rate(tritium_gateway_upstream_duration_seconds_count{{{m}}}[{RATE}]))",
                            "triton call {{model}} ({{variant}})",
                            "B",
                        ),
                    ],
                    "Mean time per request spent in the gateway itself vs in the Triton call. "
                    "The gateway's share should stay a small fraction of the Triton call.",
                    stacked=True,
                ),
                table_panel(
                    "Served versions (requests in the time range)",
                    f"sum by (model, variant, version, protocol) (increase(tritium_gateway_requests_total{{{m}}}[$__range]))",
                    "Which Triton version each variant served, and how many requests, in the selected time range.",
                ),
            ],
        ),
    ]
    return _with_panels(board, layout, rows)


def rollouts() -> dashboard.Dashboard:
    layout = Layout()
    mv = 'model=~"$model", variant=~"$variant"'
    board = (
        _base(
            "tritium-rollouts",
            "Tritium / A-B and canary",
            "Variants of one public model side by side: A/B arms, canary vs stable, and the shadow target.",
        )
        .with_variable(
            label_variable("model", "Model", "tritium_gateway_requests_total", multi=False, include_all=False)
        )
        .with_variable(
            label_variable("variant", "Variant", 'tritium_gateway_requests_total{model=~"$model"}')
        )
    )
    side_by_side = [
        timeseries_panel(
            "$variant: requests/s",
            "reqps",
            [query(f"model_version_variant:tritium_gateway_requests:rate1m{{{mv}}}", "v{{version}}")],
            "Traffic of this variant, by the Triton version it served.",
            width=6,
        )
        .repeat("variant")
        .repeat_direction("h"),
    ]
    errors_by_variant = [
        timeseries_panel(
            "$variant: error ratio",
            "percentunit",
            [
                query(
                    f"model_version_variant:tritium_gateway_request_errors:ratio_rate1m{{{mv}}}",
                    "v{{version}}",
                )
            ],
            "Share of this variant's requests that failed on the serving side (client errors excluded).",
            width=6,
        )
        .repeat("variant")
        .repeat_direction("h"),
    ]
    latency_by_variant = [
        timeseries_panel(
            "$variant: latency",
            "s",
            [
                query(
                    f"model_variant:tritium_gateway_request_duration_seconds:p50_rate1m{{{mv}}}", "p50", "A"
                ),
                query(
                    f"model_variant:tritium_gateway_request_duration_seconds:p95_rate1m{{{mv}}}", "p95", "B"
                ),
                query(
                    f"model_variant:tritium_gateway_request_duration_seconds:p99_rate1m{{{mv}}}", "p99", "C"
                ),
            ],
            "Latency percentiles of this variant (time in the gateway).",
            width=6,
        )
        .repeat("variant")
        .repeat_direction("h"),
    ]
    compare = [
        timeseries_panel(
            "p99 by variant",
            "s",
            [
                query(
                    f"model_variant:tritium_gateway_request_duration_seconds:p99_rate1m{{{mv}}}",
                    "{{variant}}",
                )
            ],
            "All variants on one axis: a canary whose line sits above stable's is slower.",
        ),
        timeseries_panel(
            "Error ratio by variant",
            "percentunit",
            [
                query(
                    f"model_version_variant:tritium_gateway_request_errors:ratio_rate1m{{{mv}}}",
                    "{{variant}} v{{version}}",
                )
            ],
            "All variants on one axis. The canary controller rolls back when the canary's ratio exceeds stable's by the policy margin.",
        ),
        timeseries_panel(
            "Traffic share by variant",
            "percentunit",
            [
                query(
                    f"sum by (variant) (model_version_variant:tritium_gateway_requests:rate1m{{{mv}}})"
                    ' / ignoring(variant) group_left sum(model_version_variant:tritium_gateway_requests:rate1m{model=~"$model"})',
                    "{{variant}}",
                )
            ],
            "Observed share of requests per variant; compare with the configured weights and the canary step.",
            stacked=True,
        ),
        timeseries_panel(
            "Canary p99 / stable p99",
            "none",
            [
                query(
                    'model_variant:tritium_gateway_request_duration_seconds:p99_rate1m{model=~"$model", variant="canary"}'
                    " / ignoring(variant)"
                    ' model_variant:tritium_gateway_request_duration_seconds:p99_rate1m{model=~"$model", variant="stable"}',
                    "{{model}}",
                )
            ],
            "Above the policy's max_p99_ratio (default 1.5) for a full window, the canary is rolled back. "
            "Empty when no canary runs.",
            min_zero=True,
        ),
    ]
    canary = [
        timeseries_panel(
            "Canary weight",
            "percent",
            [query('tritium_gateway_canary_weight{model=~"$model"}', "{{model}}")],
            "The percent of traffic the canary receives now; steps up each window while healthy.",
            width=8,
        ),
        timeseries_panel(
            "Canary state",
            "none",
            [query('max by (model, state) (tritium_gateway_canary_state{model=~"$model"})', "{{state}}")],
            "1 for the current state: idle, progressing, promoted or rolled_back. "
            "rolled_back raises the TritiumCanaryRolledBack alert.",
            width=8,
        ),
        timeseries_panel(
            "Route changes and rollbacks",
            "short",
            [
                query(
                    f'sum by (action) (increase(tritium_gateway_route_changes_total{{model=~"$model"}}[{RATE}]))',
                    "{{action}}",
                    "A",
                ),
                query(
                    'sum by (reason) (tritium_gateway_canary_rollbacks_total{model=~"$model"})',
                    "rollbacks: {{reason}}",
                    "B",
                ),
            ],
            "Route changes applied per interval (weights, shadow, canary start/promote/rollback) and the total rollbacks by reason.",
            width=8,
        ),
    ]
    shadow = [
        timeseries_panel(
            "Shadow requests/s",
            "reqps",
            [query('model_target:tritium_gateway_shadow_requests:rate1m{model=~"$model"}', "{{target}}")],
            "Mirrored requests per second. Their answers are discarded; they never change the client's response.",
            width=8,
        ),
        timeseries_panel(
            "Shadow error ratio",
            "percentunit",
            [query('model_target:tritium_gateway_shadow_errors:ratio_rate1m{model=~"$model"}', "{{target}}")],
            "Share of mirrored requests that failed. Above 5 % for 5 minutes: TritiumShadowErrorRatioHigh.",
            width=8,
        ),
        timeseries_panel(
            "Shadow p99 vs primary p99",
            "s",
            [
                query(
                    'model_target:tritium_gateway_shadow_duration_seconds:p99_rate1m{model=~"$model"}',
                    "shadow {{target}}",
                    "A",
                ),
                query(
                    'model:tritium_gateway_request_duration_seconds:p99_rate1m{model=~"$model"}',
                    "primary",
                    "B",
                ),
            ],
            "Would the shadow target meet the latency of what serves now?",
            width=8,
        ),
        timeseries_panel(
            "Shadow agreement with the primary",
            "percentunit",
            [
                query(
                    'model_target:tritium_gateway_shadow_agreement:mean_rate1m{model=~"$model"}', "{{target}}"
                )
            ],
            "Mean agreement of the shadow's answers with the primary's on the same requests (top-1 equality "
            "or cosine similarity, per the route's shadow.compare). A candidate that disagrees is stopped "
            "before any client sees it.",
            width=24,
        ),
    ]
    rows = [
        ("Side by side: traffic", side_by_side),
        ("Side by side: errors", errors_by_variant),
        ("Side by side: latency", latency_by_variant),
        ("Comparison", compare),
        ("Canary", canary),
        ("Shadow", shadow),
    ]
    return _with_panels(board, layout, rows)


def triton() -> dashboard.Dashboard:
    layout = Layout()
    s = TRITON_SELECTOR
    board = (
        _base(
            "tritium-triton",
            "Tritium / Triton internals",
            "Inside Triton: queue vs compute time, dynamic batching, instance load (Triton's own metrics).",
        )
        .with_variable(label_variable("model", "Triton model", "nv_inference_count"))
        .with_variable(label_variable("version", "Version", 'nv_inference_count{model=~"$model"}'))
    )
    rows = [
        (
            "Health",
            [
                stat_panel(
                    "Ready",
                    "bool_yes_no",
                    'min(up{job="triton-ready"})',
                    "1 while every Triton instance answers /v2/health/ready (strict readiness: every model loaded).",
                ),
                stat_panel(
                    "Inferences/s",
                    "reqps",
                    f"sum(rate(nv_inference_count{{{s}}}[{RATE}]))",
                    "Inferences (batch elements) per second across the selected models.",
                ),
                stat_panel(
                    "Failed requests/s",
                    "reqps",
                    f"sum(model_version:nv_inference_request_failure:rate1m{{{s}}})",
                    "Requests Triton failed (all reasons).",
                ),
                stat_panel(
                    "Pending requests",
                    "short",
                    f"sum(nv_inference_pending_request_count{{{s}}})",
                    "Requests waiting in Triton's queues now: the autoscaling signal beside queue time.",
                ),
            ],
        ),
        (
            "Where the time goes",
            [
                timeseries_panel(
                    "Queue vs compute time per request",
                    "s",
                    [
                        query(
                            f"model_version:nv_inference_queue_seconds_per_request:rate1m{{{s}}}",
                            "queue {{model}} v{{version}}",
                            "A",
                        ),
                        query(
                            f"model_version:nv_inference_compute_seconds_per_request:rate1m{{{s}}}",
                            "compute {{model}} v{{version}}",
                            "B",
                        ),
                    ],
                    "Mean time a request waits in the queue vs is computed. Queue time above compute time, and "
                    "growing: too few instances or replicas (TritonQueueTimeGrowing).",
                ),
                timeseries_panel(
                    "Compute breakdown per request",
                    "s",
                    [
                        query(
                            f"sum by (model, version) (rate(nv_inference_compute_input_duration_us{{{s}}}[{RATE}]))"
                            f" / sum by (model, version) (rate(nv_inference_request_success{{{s}}}[{RATE}])) / 1e6",
                            "input {{model}} v{{version}}",
                            "A",
                        ),
                        query(
                            f"sum by (model, version) (rate(nv_inference_compute_infer_duration_us{{{s}}}[{RATE}]))"
                            f" / sum by (model, version) (rate(nv_inference_request_success{{{s}}}[{RATE}])) / 1e6",
                            "infer {{model}} v{{version}}",
                            "B",
                        ),
                        query(
                            f"sum by (model, version) (rate(nv_inference_compute_output_duration_us{{{s}}}[{RATE}]))"
                            f" / sum by (model, version) (rate(nv_inference_request_success{{{s}}}[{RATE}])) / 1e6",
                            "output {{model}} v{{version}}",
                            "C",
                        ),
                    ],
                    "Input copy, model execution and output copy per request. Large input/output time: "
                    "tensors too big for the transport (consider shared memory or smaller dtypes).",
                    stacked=True,
                ),
            ],
        ),
        (
            "Batching and instances",
            [
                timeseries_panel(
                    "Average batch size",
                    "short",
                    [
                        query(
                            f"model_version:nv_inference_batch_size:avg_rate1m{{{s}}}",
                            "{{model}} v{{version}}",
                        )
                    ],
                    "Inferences per execution. Near 1 under load: the dynamic batcher finds nothing to join "
                    "(raise max_queue_delay_microseconds, or pad variable-length inputs to buckets).",
                    width=8,
                ),
                timeseries_panel(
                    "Inferences vs executions per second",
                    "ops",
                    [
                        query(
                            f"sum by (model) (rate(nv_inference_count{{{s}}}[{RATE}]))",
                            "inferences {{model}}",
                            "A",
                        ),
                        query(
                            f"sum by (model) (rate(nv_inference_exec_count{{{s}}}[{RATE}]))",
                            "executions {{model}}",
                            "B",
                        ),
                    ],
                    "The gap between the two lines is what dynamic batching saves.",
                    width=8,
                ),
                timeseries_panel(
                    "Busy instances",
                    "short",
                    [
                        query(
                            f"model_version:nv_inference_busy_instances:rate1m{{{s}}}",
                            "{{model}} v{{version}}",
                        )
                    ],
                    "Model instances busy on average (compute seconds per second). Divide by the "
                    "instance_group count for utilisation: near the count means the model is saturated.",
                    width=8,
                ),
                timeseries_panel(
                    "Requests/s: success and failure by reason",
                    "reqps",
                    [
                        query(
                            f"model_version:nv_inference_request_success:rate1m{{{s}}}",
                            "ok {{model}} v{{version}}",
                            "A",
                        ),
                        query(
                            f"sum by (model, reason) (rate(nv_inference_request_failure{{{s}}}[{RATE}]))",
                            "failed {{model}} {{reason}}",
                            "B",
                        ),
                    ],
                    "Triton's view of requests: failures by reason (BACKEND, REJECTED, CANCELED, OTHER).",
                ),
                timeseries_panel(
                    "Pending requests",
                    "short",
                    [
                        query(
                            f"sum by (model, version) (nv_inference_pending_request_count{{{s}}})",
                            "{{model}} v{{version}}",
                        )
                    ],
                    "Requests queued per model version now. The Kubernetes HPA scales Triton on this and on queue time.",
                ),
            ],
        ),
    ]
    return _with_panels(board, layout, rows)


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "tritium-overview": overview,
    "tritium-rollouts": rollouts,
    "tritium-triton": triton,
}


def render(name: str) -> str:
    """The JSON text of one dashboard, as written to dashboards/<name>.json."""
    encoded = JSONEncoder(sort_keys=True, indent=2).encode(DASHBOARDS[name]().build())
    return json.dumps(json.loads(encoded), indent=2, sort_keys=True) + "\n"


def main(out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DASHBOARDS:
        path = out_dir / f"{name}.json"
        path.write_text(render(name))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR):
        print(path)
