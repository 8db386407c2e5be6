"""The canary controller: a background loop applying the pure canary decisions to the live routes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from tritium.gateway import canary, metrics
from tritium.gateway.leadership import FileLeadership
from tritium.gateway.routes import CanaryState, Route, RouteTable
from tritium.gateway.stats import WindowSummary
from tritium.gateway.store import RouteConflictError, RouteStore

log = logging.getLogger("tritium.gateway.canary")
ACTOR = "canary-controller"


SummaryOf = Callable[[str, str, float], Awaitable[WindowSummary]]
"""(public model, variant, since) -> that variant's window."""


class CanaryController:
    """Judges every progressing canary each interval. With several gateway processes, only the one
    holding `leadership` acts (on the windows of all of them); the others stand by."""

    def __init__(
        self,
        store: RouteStore,
        summary_of: SummaryOf,
        interval_s: float,
        leadership: FileLeadership | None = None,
    ) -> None:
        self.store = store
        self.summary_of = summary_of
        self.interval_s = interval_s
        self.leadership = leadership

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick(time.time())
            except Exception:
                log.exception("canary evaluation failed; will retry")

    async def tick(self, now: float) -> None:
        if self.leadership is not None and not self.leadership.is_leader():
            return
        for name, route in self.store.table.routes.items():
            state = route.canary
            if state is None or state.state is not CanaryState.PROGRESSING:
                continue
            if route.held(now):
                continue  # a release drives this route across the fleet: one controller at a time
            since = max(state.step_started_at, now - state.policy.window_s)
            transition = canary.evaluate(
                route,
                await self.summary_of(name, state.canary, since),
                await self.summary_of(name, state.stable, since),
                now,
            )
            if transition is None:
                continue

            def apply(table: RouteTable, name: str = name, new: Route = transition.route) -> RouteTable:
                return table.with_route(name, new)

            try:
                await self.store.change(
                    name,
                    f"canary-{transition.action}",
                    ACTOR,
                    apply,
                    detail=transition.route.canary.reason if transition.route.canary else "",
                    based_on=route,
                )
            except RouteConflictError:
                continue  # an operator changed the route meanwhile: judge the new one next tick
            if transition.breach is not None:
                metrics.CANARY_ROLLBACKS.labels(model=name, reason=transition.breach.value).inc()
                log.warning("canary of %s rolled back: %s", name, transition.route.canary.reason)
            else:
                log.info(
                    "canary of %s: %s to %s %%", name, transition.action, transition.route.canary.percent
                )
