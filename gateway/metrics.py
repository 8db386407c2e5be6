"""The gateway's Prometheus metrics, declared once (deploy/ rules and dashboards use these names)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from tritium.gateway.routes import CanaryState, RouteTable
from tritium.processes import process_alive

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "tritium_gateway_requests_total",
    "Inference requests by public model, upstream version, variant, protocol, HTTP status and outcome "
    "(ok, client_error, upstream_error: only upstream errors count against a model).",
    ["model", "version", "variant", "protocol", "status", "outcome"],
)
REQUEST_DURATION = Histogram(
    "tritium_gateway_request_duration_seconds",
    "Total time an inference request spent in the gateway.",
    ["model", "variant", "protocol"],
    buckets=BUCKETS,
)
UPSTREAM_DURATION = Histogram(
    "tritium_gateway_upstream_duration_seconds",
    "Time spent in the Triton call of an inference request.",
    ["model", "variant", "protocol"],
    buckets=BUCKETS,
)
IN_FLIGHT = Gauge(
    "tritium_gateway_in_flight_requests",
    "Inference requests in the gateway now.",
    ["protocol"],
    multiprocess_mode="livesum",
)
SHADOW_REQUESTS = Counter(
    "tritium_gateway_shadow_requests_total",
    "Mirrored requests by shadow target and outcome (ok or error).",
    ["model", "target", "outcome"],
)
SHADOW_DURATION = Histogram(
    "tritium_gateway_shadow_duration_seconds",
    "Latency of mirrored requests.",
    ["model", "target"],
    buckets=BUCKETS,
)
SHADOW_AGREEMENT_ROWS = Counter(
    "tritium_gateway_shadow_agreement_rows",
    "Rows of mirrored answers compared with the primary's (routes whose shadow sets `compare`).",
    ["model", "target"],
)
SHADOW_AGREEMENT_SCORE = Counter(
    "tritium_gateway_shadow_agreement_score",
    "Sum of the rows' agreement scores (1/0 for top1, the cosine similarity for cosine): "
    "divided by the rows, the mean agreement.",
    ["model", "target"],
)
CANARY_WEIGHT = Gauge(
    "tritium_gateway_canary_weight",
    "Current canary percent (0..100).",
    ["model"],
    multiprocess_mode="livemostrecent",
)
CANARY_STATE = Gauge(
    "tritium_gateway_canary_state",
    "1 for the canary's current state.",
    ["model", "state"],
    multiprocess_mode="livemostrecent",
)
CANARY_ROLLBACKS = Counter(
    "tritium_gateway_canary_rollbacks_total", "Canary rollbacks by reason.", ["model", "reason"]
)
ROUTE_CHANGES = Counter("tritium_gateway_route_changes_total", "Applied route changes.", ["model", "action"])
ROUTE_RELOADS = Counter(
    "tritium_gateway_route_reloads_total",
    "Route file changes picked up from disk (loaded), or refused as invalid (rejected).",
    ["outcome"],
)

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    """Where the worker processes of a multi-process gateway keep their metric values, if this is one."""
    value = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    return Path(value) if value else None


def exposition() -> tuple[bytes, str]:
    """The /metrics body: this process's metrics, or the sum over all worker processes."""
    if multiprocess_dir() is None:
        return generate_latest(), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


def forget_dead_processes() -> None:
    """Drop the live gauges of worker processes that are gone (crashed or restarted)."""
    directory = multiprocess_dir()
    if directory is None:
        return
    pids = {
        int(m.group(1)) for f in directory.glob("gauge_live*.db") if (m := _LIVE_GAUGE_FILE.fullmatch(f.name))
    }
    for pid in pids:
        if pid != os.getpid() and not process_alive(pid):
            multiprocess.mark_process_dead(pid, str(directory))


def forget_this_process() -> None:
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(os.getpid(), str(directory))
    return True


_published: set[str] = set()


def publish_canaries(table: RouteTable) -> None:
    """Set the canary gauges from the route table (called after every change).

    Models no longer in the table lose their label sets (multi-process: show idle), so a deleted
    route stops showing (and alerting on) its last canary state.
    """
    for gone in _published - table.routes.keys():
        if multiprocess_dir() is None:
            CANARY_WEIGHT.remove(gone)
            for state in CanaryState:
                CANARY_STATE.remove(gone, state.value)
        else:  # label sets cannot be removed from the shared files: show the route as idle
            CANARY_WEIGHT.labels(model=gone).set(0)
            for state in CanaryState:
                CANARY_STATE.labels(model=gone, state=state.value).set(1 if state is CanaryState.IDLE else 0)
    _published.clear()
    _published.update(table.routes)
    for name, route in table.routes.items():
        canary = route.canary
        current = canary.state if canary is not None else CanaryState.IDLE
        CANARY_WEIGHT.labels(model=name).set(canary.percent if canary is not None else 0)
        for state in CanaryState:
            CANARY_STATE.labels(model=name, state=state.value).set(1 if state is current else 0)
