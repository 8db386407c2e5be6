"""The admin API: routes, weights, shadows, canaries and model load/unload, behind a bearer token."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from tritium.errors import NotFoundError
from tritium.gateway import canary, metrics
from tritium.gateway.auth import check_admin, presented_credential
from tritium.gateway.compare import compare as compare_windows
from tritium.gateway.core import Gateway
from tritium.gateway.routes import (
    MODEL_NAME_PATTERN,
    Route,
    RouteTable,
    Shadow,
    route_etag,
    table_to_data,
    validated_policy,
    validated_route,
)
from tritium.gateway.store import ANY_ROUTE, BasedOn, RouteConflictError


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


async def _actor(request: Request, gateway: Annotated[Gateway, Depends(_gateway)]) -> str:
    check_admin(presented_credential(request.headers), gateway.admin_token)
    await gateway.store.refresh()  # another gateway process may have changed the routes: start from them
    who = request.headers.get("x-tritium-actor", "admin")[:64]
    client = request.client.host if request.client else "?"
    return f"{who}@{client}"


Actor = Annotated[str, Depends(_actor)]
GatewayDep = Annotated[Gateway, Depends(_gateway)]
ModelName = Annotated[str, Path(pattern=f"^{MODEL_NAME_PATTERN}$", description="a model (route) name")]


class Error(BaseModel):
    error: str = Field(description="one line: what is wrong and how to fix it")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WeightsChange(_Body):
    weights: dict[str, Annotated[int, Field(ge=0, le=100)]] = Field(min_length=1)


class ShadowChange(_Body):
    shadow: Shadow | None


class CanaryStart(_Body):
    stable: str = "stable"
    canary: str = "canary"
    steps: list[int] | None = None
    window_s: float | None = None
    min_requests: int | None = None
    max_error_rate_increase: float | None = None
    max_p99_ratio: float | None = None
    p99_slack_ms: float | None = None


class Reason(_Body):
    reason: str = Field(default="manual", max_length=300)


def statuses(*codes: int) -> dict[int | str, dict]:
    """The error statuses an admin route really answers (besides 200, 401 and 403), for the spec."""
    return {code: {"model": Error, "description": ADMIN_STATUS_TEXT[code]} for code in codes}


ADMIN_STATUS_TEXT = {
    400: "invalid model name, route or body",
    401: "the admin API needs a bearer token",
    403: "the admin token is not valid, or the admin API is disabled (no admin token set)",
    404: "no such route, target or model",
    409: "the route changed meanwhile, no canary in progress, or a target is not loaded in Triton "
    "(or failed to load)",
    503: "Triton is not reachable",
    504: "Triton did not answer in time",
}
CHANGE = statuses(400, 404, 409, 503, 504)

router = APIRouter(prefix="/admin", tags=["admin"], responses=statuses(401, 403))


def _route(gateway: Gateway, model: str) -> Route:
    route = gateway.store.table.routes.get(model)
    if route is None:
        raise NotFoundError(f"no route for {model!r}", hint="list them with `tritium routes list`")
    return route


def _route_data(model: str, route: Route) -> dict:
    return {"model": model, "route": route.model_dump(mode="json"), "etag": route_etag(route)}


def _not_held(model: str, route: Route) -> None:
    """A route a release holds has one controller, the release: no canary starts or moves under it."""
    if route.held(time.time()):
        raise RouteConflictError(
            f"the route of {model!r} is held by {route.hold.by} until "
            f"{time.strftime('%H:%M:%S UTC', time.gmtime(route.hold.until))}",
            hint="wait for that release to end (`tritium releases list`), or take the hold off with a PUT",
        )


async def _replace(
    gateway: Gateway, model: str, action: str, who: str, new: Route, *, based_on: BasedOn, detail: str = ""
) -> dict:
    """Check `new`'s targets in Triton, then apply it only if the route is still `based_on` (else 409)."""
    await gateway.check_targets(new)

    def apply(table: RouteTable) -> RouteTable:
        return table.with_route(model, new)

    await gateway.store.change(model, action, who, apply, detail=detail, based_on=based_on)
    return _route_data(model, new)


@router.get("/routes")
async def list_routes(gateway: GatewayDep, _: Actor) -> dict:
    return table_to_data(gateway.store.table)


@router.get("/routes/{model}", responses=statuses(400, 404))
async def show_route(model: ModelName, gateway: GatewayDep, _: Actor) -> dict:
    route = _route(gateway, model)
    data = _route_data(model, route)
    if route.canary is not None:
        state = route.canary
        since = max(state.step_started_at, time.time() - state.policy.window_s)
        data["window"] = {
            alias: vars_of(await gateway.window_summary(model, alias, since))
            for alias in (state.stable, state.canary)
        }
    return data


def vars_of(summary) -> dict:  # type: ignore[no-untyped-def]
    return {
        "requests": summary.requests,
        "errors": summary.errors,
        "error_rate": summary.error_rate,
        "p99_ms": None if summary.p99_s is None else summary.p99_s * 1000,
    }


@router.get("/routes/{model}/compare", responses=statuses(400, 404))
async def compare_arms(
    model: ModelName,
    gateway: GatewayDep,
    _: Actor,
    minutes: Annotated[float, Query(gt=0, le=60, description="the window: the last N minutes")] = 10.0,
    reference: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_-]{0,62}$")] = None,
) -> dict:
    """Per arm: requests, error rate and p50/p99 with intervals; each arm against the reference (the
    canary's stable arm, else `stable`, else the first target): significance and requests still needed."""
    route = _route(gateway, model)
    aliases = [t.alias for t in route.targets]
    if reference is None:
        reference = route.canary.stable if route.canary else "stable" if "stable" in aliases else aliases[0]
    elif reference not in aliases:
        raise NotFoundError(
            f"route {model!r} has no target {reference!r}", hint=f"targets: {', '.join(aliases)}"
        )
    since = time.time() - minutes * 60
    arms = {alias: await gateway.window_counts(model, alias, since) for alias in aliases}
    feedback = {alias: await gateway.feedback_counts(model, alias, since) for alias in aliases}
    result = asdict(compare_windows(model, since, arms, reference, feedback))
    if route.shadow is not None:
        counts = await gateway.agreement_counts(model, route.shadow.alias, since)
        result["shadow"] = {
            "alias": route.shadow.alias,
            "compare": route.shadow.compare.value if route.shadow.compare else None,
            "rows": counts.rows,
            "mean_agreement": counts.mean,
            "undecodable": counts.undecodable,
        }
    return result


@router.put("/routes/{model}", responses=statuses(400, 409, 503, 504))
async def put_route(
    model: ModelName,
    body: dict,
    gateway: GatewayDep,
    who: Actor,
    if_match: Annotated[
        str | None,
        Header(
            max_length=64,
            description='the `etag` of the route this change was made from (`"absent"`: there is none): '
            "applied only if the route is still that one, else 409",
        ),
    ] = None,
    dry_run: Annotated[
        bool, Query(description="check everything (route, targets in Triton, If-Match) and change nothing")
    ] = False,
) -> dict:
    """A full declaration: it replaces whatever is there (last writer wins), or, with `If-Match`, only
    the route it was made from (compare-and-set, e.g. a release changing several gateways, which
    first checks the change on every one of them with `dry_run`)."""
    new = validated_route(body)
    based_on: BasedOn = ANY_ROUTE
    if if_match is not None:
        current = gateway.store.table.routes.get(model)
        if route_etag(current) != if_match:
            raise RouteConflictError(
                f"the route of {model!r} is no longer the one this change was made from",
                hint=f"read it again (`tritium routes show {model}`) and retry",
            )
        based_on = current
    if dry_run:
        await gateway.check_targets(new)
        return {**_route_data(model, new), "dry_run": True}
    return await _replace(gateway, model, "put", who, new, based_on=based_on, detail="route replaced")


@router.delete("/routes/{model}", responses=statuses(400, 404))
async def delete_route(model: ModelName, gateway: GatewayDep, who: Actor) -> dict:
    _route(gateway, model)
    await gateway.store.change(model, "delete", who, lambda table: table.with_route(model, None))
    await gateway.forget_windows(model)
    return {"model": model, "deleted": True}


@router.post("/routes/{model}/weights", responses=CHANGE)
async def set_weights(model: ModelName, body: WeightsChange, gateway: GatewayDep, who: Actor) -> dict:
    route = _route(gateway, model)
    new = route.with_weights(body.weights)
    detail = ", ".join(f"{alias}={weight}" for alias, weight in body.weights.items())
    return await _replace(gateway, model, "set-weights", who, new, based_on=route, detail=detail)


@router.post("/routes/{model}/shadow", responses=CHANGE)
async def set_shadow(model: ModelName, body: ShadowChange, gateway: GatewayDep, who: Actor) -> dict:
    route = _route(gateway, model)
    new = validated_route({**route.model_dump(), "shadow": body.shadow.model_dump() if body.shadow else None})
    detail = f"{body.shadow.model}:{body.shadow.version} x{body.shadow.fraction}" if body.shadow else "off"
    return await _replace(gateway, model, "set-shadow", who, new, based_on=route, detail=detail)


@router.post("/routes/{model}/canary", responses=CHANGE)
async def start_canary(model: ModelName, body: CanaryStart, gateway: GatewayDep, who: Actor) -> dict:
    route = _route(gateway, model)
    _not_held(model, route)
    overrides = body.model_dump(exclude={"stable", "canary"}, exclude_none=True)
    policy = validated_policy({**gateway.settings.canary.model_dump(), **overrides})
    new = canary.start(route, body.stable, body.canary, policy, now=time.time())
    detail = f"{body.stable} -> {body.canary} steps {list(policy.steps)}"
    return await _replace(gateway, model, "canary-start", who, new, based_on=route, detail=detail)


@router.post("/routes/{model}/canary/promote", responses=CHANGE)
async def promote_canary(
    model: ModelName, gateway: GatewayDep, who: Actor, body: Reason | None = None
) -> dict:
    reason = body.reason if body else "manual"
    route = _route(gateway, model)
    new = canary.promote(route, now=time.time(), reason=f"promoted by {who}: {reason}", name=model)
    return await _replace(gateway, model, "canary-promote", who, new, based_on=route, detail=reason)


@router.post("/routes/{model}/canary/rollback", responses=CHANGE)
async def rollback_canary(
    model: ModelName, gateway: GatewayDep, who: Actor, body: Reason | None = None
) -> dict:
    reason = body.reason if body else "manual"
    route = _route(gateway, model)
    new = canary.rollback(route, now=time.time(), reason=f"rolled back by {who}: {reason}", name=model)
    result = await _replace(gateway, model, "canary-rollback", who, new, based_on=route, detail=reason)
    metrics.CANARY_ROLLBACKS.labels(model=model, reason=canary.Breach.MANUAL.value).inc()
    return result


@router.get("/models", responses=statuses(503, 504))
async def list_models(gateway: GatewayDep, _: Actor) -> dict:
    return {"models": await gateway.upstream.repository_index()}


@router.post("/models/{model}/load", responses=statuses(400, 404, 409, 503, 504))
async def load_model(model: ModelName, gateway: GatewayDep, who: Actor) -> dict:
    """Load (or reload) a model from Triton's repository, as it is there: no overrides."""
    await gateway.require_in_repository(model)  # 404 for a name the repository does not hold
    await gateway.upstream.load_model(model)
    await gateway.store.audit_only(model, "load", who)
    return {"model": model, "loaded": True}


@router.post("/models/{model}/unload", responses=statuses(400, 404, 503, 504))
async def unload_model(model: ModelName, gateway: GatewayDep, who: Actor) -> dict:
    await gateway.require_in_repository(model)  # 404, not audited, for a name Triton does not hold
    await gateway.upstream.unload_model(model)
    await gateway.store.audit_only(model, "unload", who)
    return {"model": model, "unloaded": True}


@router.get("/audit")
async def audit(gateway: GatewayDep, _: Actor) -> dict:
    records = await gateway.store.recent_audit()
    return {"records": [vars(r) for r in records]}


@router.get("/openapi.json")
async def openapi(_: Actor) -> dict:
    """This document: every route the gateway serves, with the statuses each answers."""
    return spec()


@router.get("/docs", response_class=HTMLResponse)
async def docs(_: Actor) -> HTMLResponse:
    """Swagger UI with the spec embedded: the page needs no second, unauthenticated request."""
    return get_swagger_ui_html(
        openapi_url="/admin/openapi.json", title="Tritium gateway API", swagger_ui_parameters={"spec": spec()}
    )


def spec() -> dict:
    from tritium.gateway.openapi import build_openapi  # it reads this module's router

    return build_openapi(list(router.routes))
