"""What both protocol front-ends share: routing, credentials, accounting, shadows, target checks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping

import numpy as np

from tritium.errors import ForbiddenError, NotFoundError, OverloadedError, RepositoryError, TritiumError
from tritium.gateway import admission, metrics, router
from tritium.gateway.auth import check_api_key, presented_credential
from tritium.gateway.body import BodyLimits, ByteBudget
from tritium.gateway.feedback import (
    FeedbackCounts,
    RateLimit,
    RecentRequests,
    RequestIds,
    Served,
    feedback_windows,
)
from tritium.gateway.labels import OTHER, KnownModels, request_labels
from tritium.gateway.outcomes import Outcome, outcome_of
from tritium.gateway.router import Decision
from tritium.gateway.routes import Route
from tritium.gateway.settings import GatewaySettings
from tritium.gateway.shadow import ShadowDispatcher
from tritium.gateway.shadow_compare import AgreementCounts, agreement_windows, record_scores
from tritium.gateway.shared_outcomes import SharedOutcomes
from tritium.gateway.stats import OutcomeWindows, SecondCounts, WindowSummary
from tritium.gateway.store import RouteStore
from tritium.gateway.upstream import Upstream

log = logging.getLogger("tritium.gateway")


class Call:
    """One inference request as the gateway accounts for it: set what is known, then `finish()`."""

    __slots__ = ("decision", "error", "gateway", "name", "protocol", "request_id", "started", "upstream_s")

    def __init__(self, gateway: Gateway, name: str, protocol: str) -> None:
        self.gateway = gateway
        self.name = name
        self.protocol = protocol
        self.started = time.perf_counter()
        self.decision: Decision | None = None
        self.upstream_s: float | None = None
        self.error: TritiumError | None = None
        self.request_id = ""

    def finish(self) -> None:
        self.gateway.record(self, time.perf_counter() - self.started)
        # The error's traceback holds the handler's frame, which holds this call: without this, the
        # request body would live in that cycle until the garbage collector happens to run.
        self.error = None


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
        self.admin_port: int | None = None
        self.budget = ByteBudget(settings.max_inflight_body_bytes)
        # body_timeout_s is the HTTP protocol's to enforce (gateway/http_protocol.py)
        self.body_limits = BodyLimits(settings.max_payload_bytes, timeout_s=None)
        self.known = KnownModels()
        self.request_ids = RequestIds()
        self.recent = RecentRequests(settings.feedback_capacity, settings.feedback_window_s)
        self.feedback = feedback_windows()
        self.agreement = agreement_windows()
        self.feedback_keys = settings.feedback_key_values()
        self.feedback_rate = RateLimit(
            settings.feedback_rate_per_s, burst=max(1.0, settings.feedback_rate_per_s)
        )
        self.index_wanted = asyncio.Event()  # a name Triton answered for is not known yet: read the index
        self._random = random.random
        self._metric_children: dict[tuple[str, str, str, str, str, str], tuple] = {}

    async def window_summary(self, model: str, variant: str, since: float) -> WindowSummary:
        """A variant's canary window, over every gateway process when there are several."""
        if self.shared_windows is None:
            return self.windows.summary(model, variant, since=since)
        return await asyncio.to_thread(self.shared_windows.summary, model, variant, since=since)

    def check_feedback_key(self, headers: Mapping[str, str]) -> None:
        if not self.feedback_keys:
            raise ForbiddenError(
                "feedback is not taken here", hint="set feedback_keys in the gateway settings"
            )
        check_api_key(presented_credential(headers), self.feedback_keys)

    async def served(self, request_id: str, model: str) -> Served | None:
        """Which arm answered `request_id` for `model`, in this process or (with workers) another."""
        now = time.time()
        served = self.recent.arm_of(request_id, model, now)
        if served is None and self.shared_windows is not None:
            served = await asyncio.to_thread(
                self.shared_windows.served, request_id, model, now - self.recent.window_s
            )
        return served

    async def feedback_counts(self, model: str, arm: str, since: float) -> FeedbackCounts:
        if self.shared_windows is None:
            return self.feedback.merged(model, arm, since)
        return await asyncio.to_thread(self.shared_windows.merged_feedback, model, arm, since)

    async def window_counts(self, model: str, variant: str, since: float) -> SecondCounts:
        """A variant's outcomes since `since`, added up over every gateway process."""
        if self.shared_windows is None:
            return self.windows.merged(model, variant, since=since)
        return await asyncio.to_thread(self.shared_windows.merged, model, variant, since=since)

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

    def admit(self, model: str, version: str) -> None:
        """Names and versions are checked before anything else is done with a request."""
        admission.check_model_name(model)
        admission.check_version(model, version, self.store.table.routes.get(model))

    def decide(self, model: str, version: str, sticky_key: str | None) -> Decision:
        """Route an inference request that was admitted (`admit`) first."""
        return router.decide(self.store.table, model, version, sticky_key, self._random())

    def resolve(self, model: str, version: str) -> Decision:
        self.admit(model, version)
        return router.resolve(self.store.table, model, version)

    def shadow_for(self, model: str) -> Decision | None:
        table = self.store.table
        if model not in table.routes or table.routes[model].shadow is None:
            return None
        return router.shadow_decision(table, model, self._random())

    def record(self, call: Call, total_s: float) -> None:
        decision, error = call.decision, call.error
        if error is None:
            outcome, status = Outcome.OK, "200"
        else:
            outcome, status = outcome_of(error), str(error.http_status)
        routes = self.store.table.routes
        routed = decision is not None and not decision.client_version and decision.public_model in routes
        if routed:  # the usual request: every label comes from the route table
            model, version, variant = decision.public_model, decision.version, decision.variant  # type: ignore[union-attr]
        else:
            model, version, variant = request_labels(decision, call.name, routes.keys(), self.known)
            if model == OTHER and outcome is Outcome.OK:
                self.index_wanted.set()  # Triton served a name the index did not list: loaded since
        key = (model, version, variant, call.protocol, status, outcome.value)
        children = self._metric_children.get(key)
        if children is None:  # `.labels()` costs more than the observation itself: resolve once per key
            if len(self._metric_children) > 10_000:  # bounded labels; this is only a cache of them
                self._metric_children.clear()
            timed = outcome is not Outcome.CLIENT_ERROR  # no empty histograms for refusals
            children = self._metric_children[key] = (
                metrics.REQUESTS.labels(*key),
                metrics.REQUEST_DURATION.labels(model, variant, call.protocol) if timed else None,
                metrics.UPSTREAM_DURATION.labels(model, variant, call.protocol) if timed else None,
            )
        requests, duration, upstream = children
        requests.inc()
        if duration is None:
            return  # counted, but a refusal's latency would dilute (or a slow body inflate) the model's
        duration.observe(total_s)
        if call.upstream_s is not None and upstream is not None:
            upstream.observe(call.upstream_s)
        # Canary windows judge the model: only routed requests the route chose the version of, and
        # never a client's mistake (it would dilute, or fake, the error rate and latency).
        if routed:
            now = time.time()
            self.windows.record(model, variant, at=now, ok=outcome is Outcome.OK, latency_s=total_s)
            if outcome is Outcome.OK and call.request_id:  # feedback may come for this answer
                self.recent.remember(call.request_id, model, variant, now)

    def record_agreement(self, shadow: Decision, scores: np.ndarray | None) -> None:
        """A shadow answer scored against the primary's (None: one of them could not be read)."""
        record_scores(self.agreement.at(shadow.public_model, shadow.variant, time.time()), scores)
        if scores is not None:
            metrics.SHADOW_AGREEMENT_ROWS.labels(shadow.public_model, shadow.variant).inc(len(scores))
            metrics.SHADOW_AGREEMENT_SCORE.labels(shadow.public_model, shadow.variant).inc(
                float(scores.sum())
            )

    async def agreement_counts(self, model: str, alias: str, since: float) -> AgreementCounts:
        if self.shared_windows is None:
            return self.agreement.merged(model, alias, since)
        return await asyncio.to_thread(self.shared_windows.merged_agreement, model, alias, since)

    def submit_shadow(self, shadow: Decision, send: Callable[[], Awaitable[bool]], size: int) -> None:
        """Mirror a request whose body (``size`` bytes) stays held in the byte budget until sent;
        when the budget has no room, the shadow copy is dropped (counted), never the request."""
        try:
            self.budget.reserve(size)
        except OverloadedError:
            metrics.SHADOW_REQUESTS.labels(
                model=shadow.public_model, target=shadow.variant, outcome="dropped"
            ).inc()
            return

        async def held() -> bool:
            try:
                return await send()
            finally:
                self.budget.release(size)

        if not self.shadows.submit(shadow, held):
            self.budget.release(size)

    async def require_in_repository(self, model: str) -> None:
        """Refuse (404) a model name Triton's repository does not hold."""
        index = await self.upstream.repository_index()
        self.known = KnownModels.from_index(index)
        if model not in self.known.names:
            raise NotFoundError(f"no model {model!r} in Triton's repository", hint="see GET /admin/models")

    async def refresh_known_models(self) -> None:
        """Keep the repository index used for metric labels current: every `model_index_refresh_s`,
        and soon (at most once a second) after Triton served a name it did not list."""
        while True:
            try:
                self.known = KnownModels.from_index(await self.upstream.repository_index())
            except TritiumError as exc:  # Triton down: keep the last index
                log.debug("could not read Triton's repository index: %s", exc)
            self.index_wanted.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.index_wanted.wait(), self.settings.model_index_refresh_s)
            await asyncio.sleep(1.0)

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
