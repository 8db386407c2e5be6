"""The canary state machine, as pure functions of a route, window summaries and the time.

A canary moves weight from the stable target to the canary target step by step. Each step lasts at
least one window; it advances when the canary saw enough requests and its error rate and p99 stay
within the policy's thresholds of the stable target's, and rolls back to 0 % on the first breach.
Reaching the last step (100 %) promotes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from tritium.errors import RepositoryError, UserInputError
from tritium.gateway.routes import Canary, CanaryPolicy, CanaryState, Route, validated_route
from tritium.gateway.stats import WindowSummary


class Breach(str, Enum):
    ERROR_RATE = "error_rate"
    LATENCY = "latency"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class Verdict:
    breach: Breach | None
    reason: str
    enough_data: bool


@dataclass(frozen=True, slots=True)
class Transition:
    route: Route
    action: str  # "advance" | "promote" | "rollback"
    breach: Breach | None = None


def judge(policy: CanaryPolicy, canary: WindowSummary, stable: WindowSummary) -> Verdict:
    """Compare the canary's window with the stable target's window."""
    if canary.requests < policy.min_requests:
        return Verdict(
            None, f"waiting for {policy.min_requests} canary requests, have {canary.requests}", False
        )
    allowed_errors = stable.error_rate + policy.max_error_rate_increase
    if canary.error_rate > allowed_errors:
        return Verdict(
            Breach.ERROR_RATE,
            f"canary error rate {canary.error_rate:.3f} over {canary.requests} requests exceeds "
            f"stable {stable.error_rate:.3f} + {policy.max_error_rate_increase:.3f}",
            True,
        )
    if canary.p99_s is not None and stable.p99_s is not None:
        allowed_p99 = stable.p99_s * policy.max_p99_ratio + policy.p99_slack_ms / 1000
        if canary.p99_s > allowed_p99:
            return Verdict(
                Breach.LATENCY,
                f"canary p99 {canary.p99_s * 1000:.1f} ms exceeds stable p99 {stable.p99_s * 1000:.1f} ms "
                f"x {policy.max_p99_ratio} + {policy.p99_slack_ms} ms",
                True,
            )
    return Verdict(None, "within thresholds", True)


def _with_canary(route: Route, canary: Canary, percent: int) -> Route:
    weights = {t.alias: 0 for t in route.targets}
    weights[canary.stable] = 100 - percent
    weights[canary.canary] = percent
    data = route.model_dump()
    data["targets"] = [{**t.model_dump(), "weight": weights[t.alias]} for t in route.targets]
    data["canary"] = canary.model_dump()
    return validated_route(data)


def start(route: Route, stable: str, canary: str, policy: CanaryPolicy, now: float) -> Route:
    if route.canary is not None and route.canary.state is CanaryState.PROGRESSING:
        raise UserInputError(
            f"a canary of {route.canary.canary!r} is already progressing",
            hint="promote or roll it back first",
        )
    for alias in (stable, canary):
        if route.target(alias) is None:
            raise UserInputError(
                f"canary needs target {alias!r}, which this route does not have",
                hint=f"targets are: {', '.join(t.alias for t in route.targets)}",
            )
    state = Canary(
        stable=stable,
        canary=canary,
        policy=policy,
        state=CanaryState.PROGRESSING,
        step=0,
        step_started_at=now,
    )
    return _with_canary(route, state, policy.steps[0])


def require_progressing(route: Route, name: str) -> Canary:
    """The route's canary, if one is in progress: only that one can be promoted or rolled back."""
    canary = route.canary
    if canary is None or canary.state is not CanaryState.PROGRESSING:
        last = "" if canary is None else f" (the last one was {canary.state.value})"
        raise RepositoryError(
            f"no canary in progress for {name!r}{last}",
            hint=f"start one with `tritium routes canary start {name}`",
        )
    return canary


def promote(route: Route, now: float, reason: str = "promoted", name: str = "this route") -> Route:
    canary = require_progressing(route, name)
    done = canary.model_copy(
        update={
            "state": CanaryState.PROMOTED,
            "step": len(canary.policy.steps) - 1,
            "step_started_at": now,
            "reason": reason,
        }
    )
    return _with_canary(route, done, 100)


def rollback(route: Route, now: float, reason: str, name: str = "this route") -> Route:
    canary = require_progressing(route, name)
    done = canary.model_copy(
        update={"state": CanaryState.ROLLED_BACK, "step_started_at": now, "reason": reason}
    )
    return _with_canary(route, done, 0)


def evaluate(
    route: Route, canary_window: WindowSummary, stable_window: WindowSummary, now: float
) -> Transition | None:
    """What the controller should do with a progressing canary now, or None to hold."""
    canary = route.canary
    if canary is None or canary.state is not CanaryState.PROGRESSING:
        return None
    verdict = judge(canary.policy, canary_window, stable_window)
    if verdict.breach is not None:
        return Transition(rollback(route, now, verdict.reason), "rollback", verdict.breach)
    if not verdict.enough_data or now - canary.step_started_at < canary.policy.window_s:
        return None
    next_step = canary.step + 1
    if next_step >= len(canary.policy.steps) - 1:
        return Transition(
            promote(route, now, f"healthy through {list(canary.policy.steps[:-1])} %"), "promote"
        )
    advanced = canary.model_copy(update={"step": next_step, "step_started_at": now, "reason": verdict.reason})
    return Transition(_with_canary(route, advanced, canary.policy.steps[next_step]), "advance")
