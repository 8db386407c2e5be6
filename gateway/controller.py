"""The canary controller: a background loop applying the pure canary decisions to the live routes."""

from __future__ import annotations

import asyncio
import logging
import time

from gateway import canary, metrics
from gateway.routes import CanaryState, Route, RouteTable
from gateway.stats import OutcomeWindows
from gateway.store import RouteConflictError, RouteStore

log = logging.getLogger("tritium.gateway.canary")
ACTOR = "canary-controller"


class CanaryController:
    def __init__(self, store: RouteStore, windows: OutcomeWindows, interval_s: float) -> None:
        self.store = store
        self.windows = windows
        self.interval_s = interval_s

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick(time.time())
            except Exception:
                log.exception("canary evaluation failed; will retry")

    async def tick(self, now: float) -> None:
        for name, route in self.store.table.routes.items():
            state = route.canary
            if state is None or state.state is not CanaryState.PROGRESSING:
                continue
            since = max(state.step_started_at, now - state.policy.window_s)
            transition = canary.evaluate(
                route,
                self.windows.summary(name, state.canary, since=since),
                self.windows.summary(name, state.stable, since=since),
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
