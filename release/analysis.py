"""Where a release reads each arm's traffic from: Prometheus (summed over every gateway replica it
scrapes, as Flagger judges a canary), or the gateways' own windows added up.

Both give the same typed :class:`ArmWindow` (the gateway's ``WindowSummary``) per target alias for one model since a moment, so the
pure judgement in :mod:`tritium.release.plan` does not care which.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import httpx

from tritium.errors import UnavailableError, UserInputError
from tritium.gateway.stats import WindowSummary

# One arm's window: the gateway's own type, so the gateway's canary judgement applies unchanged.
ArmWindow = WindowSummary
EMPTY = ArmWindow(0, 0, None)


class Analysis(Protocol):
    source: str

    def arms(self, model: str, since: float) -> dict[str, ArmWindow]: ...


class GatewaysAnalysis:
    """The gateways' `/compare` windows added up: requests and errors summed; the p99 is the worst
    replica's (percentiles do not add up, and the worst one is what a client of that replica sees)."""

    source = "gateways"

    def __init__(self, gateways: list) -> None:  # type: ignore[type-arg]  (AdminClient)
        self.gateways = gateways

    def arms(self, model: str, since: float) -> dict[str, ArmWindow]:
        minutes = min(60.0, max(1 / 60, (time.time() - since) / 60))
        totals: dict[str, ArmWindow] = {}
        for admin in self.gateways:
            answer = admin.call("GET", f"/routes/{model}/compare?minutes={minutes:.4f}")
            for arm in answer["arms"]:
                seen = totals.get(arm["arm"], EMPTY)
                p99s = [p for p in (seen.p99_s, arm["p99_s"]) if p is not None]
                totals[arm["arm"]] = ArmWindow(
                    seen.requests + arm["requests"],
                    seen.errors + round(arm["error_rate"] * arm["requests"]),
                    max(p99s) if p99s else None,
                )
        return totals

    def shadow(self, model: str, since: float) -> dict | None:
        """The mirrored answers' agreement over every gateway (rows summed, mean weighted by rows)."""
        minutes = min(60.0, max(1 / 60, (time.time() - since) / 60 + 1 / 60))
        rows, score, found = 0, 0.0, None
        for admin in self.gateways:
            shadow = admin.call("GET", f"/routes/{model}/compare?minutes={minutes:.4f}").get("shadow")
            if shadow and shadow.get("rows"):
                found = shadow
                rows += shadow["rows"]
                score += shadow["mean_agreement"] * shadow["rows"]
        if found is None:
            return None
        return {**found, "rows": rows, "mean_agreement": score / rows, "gateways": len(self.gateways)}


class PrometheusAnalysis:
    """The gateway metrics as Prometheus holds them, summed over every replica it scrapes: the same
    sums the recording rules in deploy/prometheus make, over the step's own window instead of 1 m
    (a step of 30 s judged on a 1 m rate would count the previous step's traffic)."""

    source = "prometheus"

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise UserInputError(
                f"--prometheus {url!r} is not an http(s) URL", hint="e.g. --prometheus http://prometheus:9090"
            )
        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def query(self, expr: str) -> list[dict]:
        try:
            response = self._client.get(f"{self.url}/api/v1/query", params={"query": expr})
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise UnavailableError(
                f"Prometheus at {self.url} did not answer ({exc})", hint="check --prometheus"
            ) from None
        if body.get("status") != "success":
            raise UnavailableError(f"Prometheus refused {expr!r}: {body.get('error', response.text[:200])}")
        return body["data"]["result"]

    def arms(self, model: str, since: float) -> dict[str, ArmWindow]:
        if '"' in model or "\\" in model:
            raise UserInputError(f"model name {model!r} cannot be used in a Prometheus query")
        window = f"{max(1, math.ceil(time.time() - since))}s"
        selector = f'model="{model}"'
        requests = self._by_variant(
            f"sum by (variant) (increase(tritium_gateway_requests_total{{{selector}}}[{window}]))"
        )
        errors = self._by_variant(
            f'sum by (variant) (increase(tritium_gateway_requests_total{{{selector},outcome="upstream_error"}}[{window}]))'
        )
        p99 = self._by_variant(
            "histogram_quantile(0.99, sum by (variant, le) "
            f"(rate(tritium_gateway_request_duration_seconds_bucket{{{selector}}}[{window}])))"
        )
        return {
            variant: ArmWindow(round(count), round(errors.get(variant, 0.0)), p99.get(variant))
            for variant, count in requests.items()
        }

    def _by_variant(self, expr: str) -> dict[str, float]:
        values = {}
        for sample in self.query(expr):
            value = float(sample["value"][1])
            if math.isfinite(value):
                values[sample["metric"].get("variant", "")] = value
        return values
