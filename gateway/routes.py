"""The route table: public model names mapped to weighted Triton targets, a shadow and a canary.

The same YAML format is read at start-up, served and changed by the admin API, and written back
to the route file, so a file written by the gateway can be edited by hand and loaded again.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import stat
import tempfile
from enum import Enum
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from tritium.errors import UserInputError
from tritium.gateway.shadow_compare import Agreement

# Model names as a Triton repository holds them (directory names), and as the gateway admits them
# (gateway/admission.py): no '/', no NUL, no spaces, bounded; never "." or "..".
MODEL_NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
ModelName = Annotated[str, StringConstraints(pattern=rf"^{MODEL_NAME_PATTERN}$")]
Alias = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
Version = Annotated[str, StringConstraints(pattern=r"^[0-9]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Strict):
    """One Triton model version a public name can be routed to."""

    alias: Alias
    model: ModelName
    version: Version = ""
    weight: int = Field(default=0, ge=0, le=100)

    @property
    def label(self) -> str:
        return f"{self.model}:{self.version or 'policy'}"


class Shadow(_Strict):
    """A target that receives a copy of a fraction of the requests; its answers never reach clients.

    With `compare`, each answer is scored against the primary's on the same request (`top1`: the
    same class; `cosine`: the similarity of the rows) on `output` (default: the first output).
    """

    alias: Alias = "shadow"
    model: ModelName
    version: Version = ""
    fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    compare: Agreement | None = None
    output: str | None = Field(default=None, min_length=1, max_length=256)


class CanaryState(str, Enum):
    IDLE = "idle"
    PROGRESSING = "progressing"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"


class CanaryPolicy(_Strict):
    """How a canary advances, and the thresholds (against the stable target) that roll it back."""

    steps: tuple[int, ...] = (5, 25, 50, 100)
    window_s: float = Field(default=60.0, gt=0, le=3600)  # windows keep an hour (gateway/stats.py)
    min_requests: int = Field(default=20, ge=1)
    max_error_rate_increase: float = Field(default=0.01, ge=0, le=1)
    max_p99_ratio: float = Field(default=1.5, ge=1)
    p99_slack_ms: float = Field(default=5.0, ge=0)

    @field_validator("steps")
    @classmethod
    def _steps_rise_to_100(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps or steps[-1] != 100 or any(not 0 < s <= 100 for s in steps):
            raise ValueError(
                "canary steps must be percentages in (0, 100] ending at 100, e.g. [5, 25, 50, 100]"
            )
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"canary steps must strictly increase, got {list(steps)}")
        return steps


class Canary(_Strict):
    """A progressive rollout from the `stable` alias to the `canary` alias, with its current state."""

    stable: Alias = "stable"
    canary: Alias = "canary"
    policy: CanaryPolicy = CanaryPolicy()
    state: CanaryState = CanaryState.IDLE
    step: int = Field(default=-1, ge=-1)
    step_started_at: float = 0.0
    reason: str = ""

    @property
    def percent(self) -> int:
        if self.state is CanaryState.PROMOTED:
            return 100
        if self.state is CanaryState.PROGRESSING and self.step >= 0:
            return self.policy.steps[self.step]
        return 0


class Hold(_Strict):
    """One controller at a time: a release driving this route across several gateways holds it, and
    every gateway's own canary controller stands down (and new canaries are refused) until `until`.

    A lease, not a flag: a release that dies without taking its hold off frees the route when the
    lease ends; a running release renews it at every step.
    """

    by: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@ -]+$")
    until: float = Field(gt=0)

    def active(self, now: float) -> bool:
        return now < self.until


class Route(_Strict):
    """How one public model name is served."""

    targets: tuple[Target, ...] = Field(min_length=1)
    sticky_header: str | None = None
    shadow: Shadow | None = None
    canary: Canary | None = None
    hold: Hold | None = None

    def held(self, now: float) -> bool:
        return self.hold is not None and self.hold.active(now)

    @model_validator(mode="after")
    def _consistent(self) -> Route:
        aliases = [t.alias for t in self.targets]
        duplicates = sorted({a for a in aliases if aliases.count(a) > 1})
        if duplicates:
            raise ValueError(f"target aliases must be unique, repeated: {', '.join(duplicates)}")
        total = sum(t.weight for t in self.targets)
        if total != 100:
            raise ValueError(f"target weights must add up to 100, they add up to {total}")
        if self.shadow is not None and self.shadow.alias in aliases:
            raise ValueError(f"shadow alias {self.shadow.alias!r} is also a target alias")
        if self.canary is not None:
            for role in ("stable", "canary"):
                if getattr(self.canary, role) not in aliases:
                    raise ValueError(f"canary {role} alias {getattr(self.canary, role)!r} is not a target")
            if self.canary.stable == self.canary.canary:
                raise ValueError("canary and stable must be different targets")
        return self

    def target(self, alias: str) -> Target | None:
        return next((t for t in self.targets if t.alias == alias), None)

    @property
    def primary(self) -> Target:
        """The target that answers metadata requests: `stable` if there is one, else the heaviest."""
        stable = self.target("stable")
        if stable is not None and stable.weight > 0:
            return stable
        return max(self.targets, key=lambda t: t.weight)

    def with_weights(self, weights: dict[str, int]) -> Route:
        unknown = sorted(set(weights) - {t.alias for t in self.targets})
        if unknown:
            raise UserInputError(
                f"unknown target alias(es): {', '.join(unknown)}",
                hint=f"targets are: {', '.join(t.alias for t in self.targets)}",
            )
        targets = tuple(t.model_copy(update={"weight": weights.get(t.alias, t.weight)}) for t in self.targets)
        return validated_route({**self.model_dump(), "targets": [t.model_dump() for t in targets]})


class RouteTable(_Strict):
    routes: dict[ModelName, Route] = Field(default_factory=dict)

    def with_route(self, name: str, route: Route | None) -> RouteTable:
        routes = dict(self.routes)
        if route is None:
            routes.pop(name, None)
        else:
            routes[name] = route
        return RouteTable(routes=routes)


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "route"
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def route_etag(route: Route | None) -> str:
    """A digest of the route's content, equal on every gateway holding the same route: what a client
    sends back in `If-Match` to change the route only if nobody changed it since it read it."""
    if route is None:
        return '"absent"'
    canonical = json.dumps(route.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest() + '"'


def validated_route(data: object) -> Route:
    try:
        return Route.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(f"invalid route: {_one_line(exc)}") from None


def validated_policy(data: object) -> CanaryPolicy:
    try:
        return CanaryPolicy.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(
            f"invalid canary policy: {_one_line(exc)}", hint="see `tritium routes canary start --help`"
        ) from None


def validated_table(data: object, *, source: str = "route table") -> RouteTable:
    if data is None:
        return RouteTable()
    try:
        return RouteTable.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(
            f"invalid {source}: {_one_line(exc)}", hint="see deploy/routes.example.yaml"
        ) from None


def table_to_data(table: RouteTable) -> dict:
    return table.model_dump(mode="json", exclude_defaults=False)


def load_table(path: Path) -> RouteTable:
    """Read a route file; a missing file is an empty table (every model passes through)."""
    if not path.exists():
        return RouteTable()
    return parse_table(path.read_bytes(), path)


def parse_table(content: bytes, path: Path) -> RouteTable:
    """A route file's content as a validated table."""
    try:
        data = yaml.safe_load(content.decode())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserInputError(f"route file {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    return validated_table(data, source=f"route file {path}")


def save_table(table: RouteTable, path: Path) -> None:
    """Write the table atomically: a reader sees the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(table_to_data(table), sort_keys=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        with contextlib.suppress(FileNotFoundError):  # an operator's file keeps the mode they gave it
            os.fchmod(fd, stat.S_IMODE(path.stat().st_mode))
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
