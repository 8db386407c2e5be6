"""The gateway's Prometheus metrics, declared once (deploy/ rules and dashboards use these names)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from gateway.routes import CanaryState, RouteTable

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "tritium_gateway_requests_total",
    "Inference requests by public model, upstream version, variant, protocol and HTTP status.",
    ["model", "version", "variant", "protocol", "status"],
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
    "tritium_gateway_in_flight_requests", "Inference requests in the gateway now.", ["protocol"]
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
CANARY_WEIGHT = Gauge("tritium_gateway_canary_weight", "Current canary percent (0..100).", ["model"])
CANARY_STATE = Gauge("tritium_gateway_canary_state", "1 for the canary's current state.", ["model", "state"])
CANARY_ROLLBACKS = Counter(
    "tritium_gateway_canary_rollbacks_total", "Canary rollbacks by reason.", ["model", "reason"]
)
ROUTE_CHANGES = Counter("tritium_gateway_route_changes_total", "Applied route changes.", ["model", "action"])


_published: set[str] = set()


def publish_canaries(table: RouteTable) -> None:
    """Set the canary gauges from the route table (called after every change).

    Models no longer in the table lose their label sets, so a deleted route stops showing (and
    alerting on) its last canary state.
    """
    for gone in _published - table.routes.keys():
        CANARY_WEIGHT.remove(gone)
        for state in CanaryState:
            CANARY_STATE.remove(gone, state.value)
    _published.clear()
    _published.update(table.routes)
    for name, route in table.routes.items():
        canary = route.canary
        current = canary.state if canary is not None else CanaryState.IDLE
        CANARY_WEIGHT.labels(model=name).set(canary.percent if canary is not None else 0)
        for state in CanaryState:
            CANARY_STATE.labels(model=name, state=state.value).set(1 if state is current else 0)
