"""The routing decision: a pure function of the route table, the request and a random draw.

Sticky keys use weighted rendezvous hashing: every target scores the key with a stable hash and the
best score wins. Any replica computes the same answer without shared state, each target gets a
share of keys proportional to its weight, and a weight change only moves keys towards the targets
whose weight grew (the minimum possible).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from tritium.gateway.routes import Route, RouteTable, Target

DIRECT_VARIANT = "direct"


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one request goes: the upstream Triton model and version, and the variant that serves it."""

    public_model: str
    model: str
    version: str
    variant: str
    chosen_by_route: bool
    client_version: bool = False
    """The version is the client's own string (not a route target's): trust it only once Triton confirms it."""

    @property
    def label(self) -> str:
        return f"{self.model}:{self.version or 'policy'}"


def _unit_hash(*parts: str) -> float:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def sticky_target(route_name: str, targets: tuple[Target, ...], key: str) -> Target:
    """The target a sticky key belongs to (weighted rendezvous hashing)."""
    best, best_score = None, -math.inf
    for target in targets:
        if target.weight <= 0:
            continue
        score = -target.weight / math.log(_unit_hash(route_name, target.alias, key))
        if score > best_score:
            best, best_score = target, score
    if best is None:
        raise ValueError(f"route {route_name!r} has no target with a positive weight")
    return best


def weighted_target(targets: tuple[Target, ...], draw: float) -> Target:
    """The target a uniform draw in [0, 1) falls on, by cumulative weight."""
    total = sum(t.weight for t in targets)
    point = draw * total
    cumulative = 0
    for target in targets:
        cumulative += target.weight
        if point < cumulative and target.weight > 0:
            return target
    return next(t for t in reversed(targets) if t.weight > 0)


def _to(name: str, target: Target, *, chosen_by_route: bool) -> Decision:
    return Decision(name, target.model, target.version, target.alias, chosen_by_route)


def _explicit(name: str, route: Route, version: str) -> Decision:
    target = route.target(version) if not version.isdigit() else None
    if target is None:
        target = next((t for t in route.targets if t.version == version), None)
    if target is not None:
        return _to(name, target, chosen_by_route=False)
    return Decision(
        name, route.primary.model, version, f"v{version}", chosen_by_route=False, client_version=True
    )


def _direct(name: str, version: str) -> Decision:
    if version:
        return Decision(name, name, version, f"v{version}", chosen_by_route=False, client_version=True)
    return Decision(name, name, "", DIRECT_VARIANT, chosen_by_route=False)


def decide(table: RouteTable, name: str, version: str, sticky_key: str | None, draw: float) -> Decision:
    """Route one inference request.

    `version` is what the request named ("" for none): a Triton version number or a target alias.
    """
    route = table.routes.get(name)
    if route is None:
        return _direct(name, version)
    if version:
        return _explicit(name, route, version)
    if sticky_key:
        return _to(name, sticky_target(name, route.targets, sticky_key), chosen_by_route=True)
    return _to(name, weighted_target(route.targets, draw), chosen_by_route=True)


def resolve(table: RouteTable, name: str, version: str) -> Decision:
    """Route a metadata, config or readiness request: the named version, else the primary target."""
    route = table.routes.get(name)
    if route is None:
        return _direct(name, version)
    if version:
        return _explicit(name, route, version)
    return _to(name, route.primary, chosen_by_route=True)


def shadow_decision(table: RouteTable, name: str, draw: float) -> Decision | None:
    """The shadow copy of a request, when the route has a shadow and the draw falls in its fraction."""
    route = table.routes.get(name)
    if route is None or route.shadow is None or draw >= route.shadow.fraction:
        return None
    shadow = route.shadow
    return Decision(name, shadow.model, shadow.version, shadow.alias, chosen_by_route=True)
