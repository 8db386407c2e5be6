"""Pure decisions of a release: the route of each phase, and the verdicts of shadow and A/B windows.

Routes are the gateway's route documents (what `GET /admin/routes/{model}` returns under "route").
Every function returns a whole new route, so applying it (a `PUT`) is idempotent: a resumed release
applies the same document again and nothing moves twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritium.errors import UserInputError
from tritium.release.analysis import ArmWindow

STABLE, CANDIDATE, PREVIOUS = "stable", "candidate", "previous"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    enough_data: bool = True


def stable_target(route: dict) -> dict:
    """The target that serves now: `stable`, else the heaviest."""
    targets = route["targets"]
    stable = next((t for t in targets if t["alias"] == STABLE and t["weight"] > 0), None)
    return stable or max(targets, key=lambda t: t["weight"])


def _target(alias: str, model: str, version: int | str, weight: int) -> dict:
    return {"alias": alias, "model": model, "version": str(version), "weight": weight}


def _route(route: dict, targets: list[dict], shadow: dict | None = None) -> dict:
    """The route with these targets and shadow, no canary state and no hold, its other settings kept."""
    return {
        **{k: v for k, v in route.items() if k not in ("targets", "shadow", "canary", "hold")},
        "targets": targets,
        "shadow": shadow,
    }


def first_route(triton_model: str, version: int) -> dict:
    """The route of a model released for the first time: the candidate alone (no comparison possible)."""
    return {"targets": [_target(STABLE, triton_model, version, 100)]}


def with_candidate(route: dict, triton_model: str, candidate: int) -> dict:
    """Stable serves everything; the candidate is a target at 0 % (for the canary to move weight to)."""
    stable = stable_target(route)
    return _route(
        route,
        [
            _target(STABLE, stable["model"], stable["version"], 100),
            _target(CANDIDATE, triton_model, candidate, 0),
        ],
    )


def with_shadow(route: dict, triton_model: str, candidate: int, compare: str) -> dict:
    """Stable serves everything; every request is mirrored to the candidate and their answers compared."""
    stable = stable_target(route)
    shadow = {
        "alias": CANDIDATE,
        "model": triton_model,
        "version": str(candidate),
        "fraction": 1.0,
        "compare": compare,
    }
    return _route(route, [_target(STABLE, stable["model"], stable["version"], 100)], shadow)


def split(route: dict, triton_model: str, candidate: int, candidate_percent: int) -> dict:
    stable = stable_target(route)
    return _route(
        route,
        [
            _target(STABLE, stable["model"], stable["version"], 100 - candidate_percent),
            _target(CANDIDATE, triton_model, candidate, candidate_percent),
        ],
    )


def promoted(route: dict, triton_model: str, candidate: int, previous: dict | None) -> dict:
    """The candidate is `stable`; the previous stable stays a target at 0 % (instant rollback) until
    the grace period ends."""
    targets = [_target(STABLE, triton_model, candidate, 100)]
    if previous is not None:
        targets.append(_target(PREVIOUS, previous["model"], previous["version"], 0))
    return _route(route, targets)


def settled(route: dict) -> dict:
    """After the grace period: the stable target alone."""
    return _route(route, [t for t in route["targets"] if t["alias"] == STABLE] or [stable_target(route)])


def restored(route: dict, previous: dict) -> dict:
    """Back to the previous stable, alone, with everything of the release taken off."""
    return _route(route, [_target(STABLE, previous["model"], previous["version"], 100)])


def held(route: dict, by: str, until: float) -> dict:
    """The route held by a release: every gateway's own canary controller stands down until `until`."""
    return {**route, "hold": {"by": by, "until": until}}


def judge_step(
    candidate: ArmWindow,
    stable: ArmWindow,
    min_requests: int,
    max_error_rate_increase: float,
    max_p99_ratio: float,
    p99_slack_ms: float,
) -> Verdict:
    """One canary step the release drives itself (a fleet, or Prometheus analysis): the gateway's own
    canary judgement (gateway/canary.py), on the fleet's windows."""
    from tritium.gateway.canary import judge
    from tritium.gateway.routes import CanaryPolicy

    policy = CanaryPolicy(
        min_requests=min_requests, max_error_rate_increase=max_error_rate_increase,
        max_p99_ratio=max_p99_ratio, p99_slack_ms=p99_slack_ms,
    )  # fmt: skip
    verdict = judge(policy, candidate, stable)
    if not verdict.enough_data or verdict.breach is not None:
        return Verdict(False, verdict.reason, enough_data=verdict.enough_data)
    return Verdict(
        True,
        f"candidate {candidate.requests} requests, error rate {candidate.error_rate:.3f}, "
        f"p99 {_ms(candidate.p99_s)} (stable {stable.requests} requests, p99 {_ms(stable.p99_s)})",
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def agreement_for(metric: str | None) -> str:
    """How shadow answers are compared, from the recipe's metric."""
    return "top1" if metric in ("top1", None) else "cosine"


def judge_shadow(shadow: dict | None, min_agreement: float, min_rows: int) -> Verdict:
    """`shadow` is the compare answer's "shadow" part."""
    if not shadow or not shadow.get("rows"):
        return Verdict(False, "no mirrored answer was compared yet", enough_data=False)
    rows, mean = shadow["rows"], shadow["mean_agreement"]
    if rows < min_rows:
        return Verdict(False, f"{rows} rows compared, waiting for {min_rows}", enough_data=False)
    if mean < min_agreement:
        return Verdict(
            False, f"{shadow['compare']} agreement {mean:.4f} over {rows} rows is below {min_agreement}"
        )
    return Verdict(True, f"{shadow['compare']} agreement {mean:.4f} over {rows} rows")


def judge_ab(
    comparison: dict,
    min_requests: int,
    max_error_rate_increase: float,
    max_p99_ratio: float,
    p99_slack_ms: float,
) -> Verdict:
    """The candidate arm against stable, from `GET /admin/routes/{model}/compare`."""
    arms = {arm["arm"]: arm for arm in comparison["arms"]}
    if CANDIDATE not in arms or STABLE not in arms:
        raise UserInputError("the A/B comparison has no stable or candidate arm")
    candidate, stable = arms[CANDIDATE], arms[STABLE]
    if min(candidate["requests"], stable["requests"]) < min_requests:
        return Verdict(False, f"waiting for {min_requests} requests on each arm", enough_data=False)
    diff = next(d for d in comparison["differences"] if d["arm"] == CANDIDATE)
    worse = candidate["error_rate"] - stable["error_rate"]
    if worse > max_error_rate_increase and (diff["error_rate_p_value"] or 1.0) < 0.05:
        return Verdict(
            False,
            f"candidate error rate {candidate['error_rate']:.4f} vs stable {stable['error_rate']:.4f} (p = {diff['error_rate_p_value']:.4f})",
        )
    if candidate["p99_s"] is not None and stable["p99_s"] is not None:
        allowed = stable["p99_s"] * max_p99_ratio + p99_slack_ms / 1000
        if candidate["p99_s"] > allowed:
            return Verdict(
                False,
                f"candidate p99 {candidate['p99_s'] * 1000:.1f} ms over stable {stable['p99_s'] * 1000:.1f} ms x {max_p99_ratio} + {p99_slack_ms} ms",
            )
    return Verdict(
        True,
        f"candidate error rate {candidate['error_rate']:.4f} vs stable {stable['error_rate']:.4f}, p99 within bounds",
    )
