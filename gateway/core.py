"""What both protocol front-ends share: routing, credentials, accounting, shadows, target checks."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping

from tritium.errors import RepositoryError
from tritium.gateway import metrics, router
from tritium.gateway.auth import check_api_key, presented_credential
from tritium.gateway.labels import UNKNOWN, confirmed_labels
from tritium.gateway.router import Decision
from tritium.gateway.routes import Route
from tritium.gateway.settings import GatewaySettings
from tritium.gateway.shadow import ShadowDispatcher
from tritium.gateway.shared_outcomes import SharedOutcomes
from tritium.gateway.stats import OutcomeWindows, WindowSummary
from tritium.gateway.store import RouteStore
from tritium.gateway.upstream import Upstream


class Gateway:
    def __init__(self, settings: GatewaySettings, store: RouteStore, upstream: Upstream) -> None:
        self.settings = settings
        self.store = store
        self.upstream = upstream
        self.windows = OutcomeWindows()
        self.shared_windows: SharedOutcomes | None = None  # set when several processes serve
        self.shadows = ShadowDispatcher(settings.shadow_max_in_flight)
        self.api_keys = settings.api_key_values()
        self.admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
        self.grpc_port: int | None = None
        self._random = random.random
        self._metric_children: dict[tuple[str, str, str, str, int], tuple] = {}

    async def window_summary(self, model: str, variant: str, since: float) -> WindowSummary:
        """A variant's canary window, over every gateway process when there are several."""
        if self.shared_windows is None:
            return self.windows.summary(model, variant, since=since)
        return await asyncio.to_thread(self.shared_windows.summary, model, variant, since=since)

    async def forget_windows(self, model: str) -> None:
        self.windows.forget(model)
        if self.shared_windows is not None:
            await asyncio.to_thread(self.shared_windows.forget, model)

    def authorize(self, headers: Mapping[str, str]) -> None:
        if self.api_keys:
            check_api_key(presented_credential(headers), self.api_keys)

    def sticky_header(self, model: str) -> str:
        route = self.store.table.routes.get(model)
        return (
            (route.sticky_header or self.settings.sticky_header).lower()
            if route
            else self.settings.sticky_header
        )

    def decide(self, model: str, version: str, sticky_key: str | None) -> Decision:
        return router.decide(self.store.table, model, version, sticky_key, self._random())

    def resolve(self, model: str, version: str) -> Decision:
        return router.resolve(self.store.table, model, version)

    def shadow_for(self, model: str) -> Decision | None:
        table = self.store.table
        if model not in table.routes or table.routes[model].shadow is None:
            return None
        return router.shadow_decision(table, model, self._random())

    def record(
        self,
        decision: Decision | None,
        model: str,
        protocol: str,
        status: int,
        total_s: float,
        upstream_s: float | None,
    ) -> None:
        routes = self.store.table.routes
        if decision is None:  # refused before routing (credentials, body): only a routed name is a label
            variant = version = ""
            routed = model in routes
            if not routed:
                model = UNKNOWN
        else:
            variant, version, model = decision.variant, decision.version, decision.public_model
            routed = model in routes
            if not routed or decision.client_version:  # labels must not grow with what clients send
                model, version, variant = confirmed_labels(decision, routed, status, upstream_s is not None)
        key = (model, version, variant, protocol, status)
        children = self._metric_children.get(key)
        if children is None:  # `.labels()` costs more than the observation itself: resolve once per key
            children = self._metric_children[key] = (
                metrics.REQUESTS.labels(model, version, variant, protocol, str(status)),
                metrics.REQUEST_DURATION.labels(model, variant, protocol),
                metrics.UPSTREAM_DURATION.labels(model, variant, protocol),
            )
        requests, duration, upstream = children
        requests.inc()
        duration.observe(total_s)
        if upstream_s is not None:
            upstream.observe(upstream_s)
        if routed and decision is not None and not decision.client_version:
            self.windows.record(model, variant, at=time.time(), ok=status < 500, latency_s=total_s)

    async def check_targets(self, route: Route) -> None:
        """Refuse a route that sends traffic to a version Triton does not serve (when enabled)."""
        if not self.settings.check_targets:
            return
        needed = [(t.alias, t.model, t.version) for t in route.targets if t.weight > 0]
        if route.canary is not None:
            canary_target = route.target(route.canary.canary)
            if canary_target is not None:
                needed.append((canary_target.alias, canary_target.model, canary_target.version))
        if route.shadow is not None:
            needed.append((route.shadow.alias, route.shadow.model, route.shadow.version))
        for alias, model, version in dict.fromkeys(needed):
            if not await self.upstream.model_ready(model, version):
                raise RepositoryError(
                    f"target {alias} ({model}:{version or 'policy'}) is not ready in Triton",
                    hint=f"load it first (tritium routes load {model}) or fix the route",
                )
