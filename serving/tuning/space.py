"""The serving settings `tritium tune` searches, and their translation to and from Triton configs.

Pure: no I/O. A :class:`Candidate` is one point of the space (max batch size, dynamic batching on/off,
queue delay, preferred batch size, instance count and kind, runtime threads per instance); a
:class:`SearchSpace` lists the values each setting may take. :func:`candidate_from_config` reads the
point a loaded config sits at, :func:`apply_candidate` writes a point into a config (what Triton is
sent), :func:`apply_changes` writes only what changed between two points into a canonical config
(what ``--apply`` stores).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from enum import Enum

from tritonclient.grpc import model_config_pb2 as mc

from tritium.errors import UserInputError

#: Triton's onnxruntime backend reads this parameter; the local runtime's generated model reads
#: ``tritium_intra_op_threads`` (derived from it by tritium.serving.runtime_repo).
NATIVE_THREADS_KEY = "intra_op_thread_count"
DERIVED_THREADS_KEY = "tritium_intra_op_threads"

# Preferred batch sizes are relative to max_batch_size in the space, so one token means the same
# thing at every max_batch_size the search tries. "max" is Triton's own default: a config without
# preferred_batch_size is loaded with preferred_batch_size = [max_batch_size].
PREFERRED_FRACTIONS = {"max": 1, "half": 2, "quarter": 4}
_EXPLICIT_PREFERRED = re.compile(r"[1-9][0-9]{0,5}(\+[1-9][0-9]{0,5}){0,7}")


class Kind(str, Enum):
    cpu = "cpu"
    gpu = "gpu"

    @property
    def proto(self) -> int:
        return mc.ModelInstanceGroup.KIND_GPU if self is Kind.gpu else mc.ModelInstanceGroup.KIND_CPU


@dataclass(frozen=True)
class Candidate:
    """One serving config. ``threads`` 0 is the runtime's default; ``preferred`` a token (see above)."""

    max_batch_size: int
    dynamic_batching: bool
    max_queue_delay_us: int
    preferred: str
    instances: int
    kind: Kind
    threads: int

    def __post_init__(self) -> None:
        if self.max_batch_size < 0 or self.max_queue_delay_us < 0 or self.threads < 0:
            raise ValueError(f"negative setting in {self}")
        if self.instances < 1:
            raise ValueError(f"instances must be at least 1 in {self}")
        check_preferred(self.preferred)

    def effective(self) -> Candidate:
        """The same config with settings that have no effect zeroed, so equal configs compare equal."""
        batching = self.dynamic_batching and self.max_batch_size > 0
        if batching:
            return self
        return replace(self, dynamic_batching=False, max_queue_delay_us=0, preferred="max")

    def preferred_sizes(self) -> list[int]:
        """The ``preferred_batch_size`` list Triton gets (empty without dynamic batching)."""
        if not self.effective().dynamic_batching:
            return []
        return preferred_sizes(self.preferred, self.max_batch_size)

    def label(self) -> str:
        parts = []
        if self.max_batch_size:
            parts.append(f"max batch {self.max_batch_size}")
        if self.effective().dynamic_batching:
            sizes = "/".join(map(str, self.preferred_sizes()))
            parts.append(f"batching {self.max_queue_delay_us} µs, preferred {sizes}")
        else:
            parts.append("no batching")
        parts.append(f"{self.instances}×{self.kind.value}")
        parts.append(f"{self.threads or 'default'} threads")
        return ", ".join(parts)

    def as_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["kind"] = self.kind.value
        data["preferred_batch_size"] = self.preferred_sizes()
        return data


def check_preferred(token: str) -> None:
    if token not in PREFERRED_FRACTIONS and not _EXPLICIT_PREFERRED.fullmatch(token):
        raise ValueError(
            f"preferred batch size {token!r}: use max, half, quarter or sizes joined by '+' (e.g. 4+8)"
        )


def preferred_sizes(token: str, max_batch_size: int) -> list[int]:
    if token in PREFERRED_FRACTIONS:
        return [max(1, max_batch_size // PREFERRED_FRACTIONS[token])]
    return sorted({int(part) for part in token.split("+")})


def preferred_token(sizes: Sequence[int], max_batch_size: int) -> str:
    sizes = sorted(set(sizes))
    if not sizes:
        return "max"
    for token in PREFERRED_FRACTIONS:
        if sizes == preferred_sizes(token, max_batch_size):
            return token
    return "+".join(map(str, sizes))


DIMENSIONS = (
    "max_batch_size",
    "dynamic_batching",
    "max_queue_delay_us",
    "preferred",
    "instances",
    "kind",
    "threads",
)


@dataclass(frozen=True)
class SearchSpace:
    """The values each setting may take, each tuple in the order the climb steps through it."""

    max_batch_size: tuple[int, ...]
    dynamic_batching: tuple[bool, ...]
    max_queue_delay_us: tuple[int, ...]
    preferred: tuple[str, ...]
    instances: tuple[int, ...]
    kind: tuple[Kind, ...]
    threads: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in DIMENSIONS:
            values = getattr(self, name)
            if not values:
                raise ValueError(f"no values for {name}")
            if len(set(values)) != len(values):
                raise ValueError(f"repeated values for {name}: {values}")

    def with_point(self, candidate: Candidate) -> SearchSpace:
        """This space with ``candidate``'s values added where missing (the climb starts there)."""
        changes = {}
        for name in DIMENSIONS:
            values, value = getattr(self, name), getattr(candidate, name)
            if value not in values:
                changes[name] = _ordered(name, (*values, value))
        return replace(self, **changes) if changes else self

    def grid(self) -> list[Candidate]:
        """Every distinct, valid config of the space, in a stable order (brute mode)."""
        seen: set[Candidate] = set()
        out = []
        for values in itertools.product(*(getattr(self, name) for name in DIMENSIONS)):
            candidate = _make(dict(zip(DIMENSIONS, values, strict=True)))
            if candidate is None:
                continue
            effective = candidate.effective()
            if effective not in seen:
                seen.add(effective)
                out.append(effective)
        return out

    def neighbors(self, candidate: Candidate) -> list[Candidate]:
        """Configs one step away along one setting (ordered settings: the next value either way)."""
        out = []
        for name in DIMENSIONS:
            values = getattr(self, name)
            value = getattr(candidate, name)
            if value not in values:
                continue
            index = values.index(value)
            if name in ("kind", "dynamic_batching"):  # unordered: every other value is one step away
                steps = [v for v in values if v != value]
            else:
                steps = [values[i] for i in (index - 1, index + 1) if 0 <= i < len(values)]
            for step in steps:
                neighbor = _make({**_values(candidate), name: step})
                if neighbor is not None and neighbor.effective() != candidate.effective():
                    out.append(neighbor)
        return out


def _values(candidate: Candidate) -> dict:
    return {name: getattr(candidate, name) for name in DIMENSIONS}


def _make(values: dict) -> Candidate | None:
    """A candidate, or None where the settings contradict each other (preferred size over the max)."""
    candidate = Candidate(**values)
    if candidate.effective().dynamic_batching and any(
        size > candidate.max_batch_size for size in candidate.preferred_sizes()
    ):
        return None
    return candidate


def _ordered(name: str, values: Iterable) -> tuple:
    values = tuple(dict.fromkeys(values))
    if name in ("max_batch_size", "max_queue_delay_us", "instances", "threads"):
        return tuple(sorted(values))
    return values


def candidate_from_config(config: mc.ModelConfig, threads_key: str) -> Candidate:
    """Where a (loaded) config sits in the space."""
    batching = config.HasField("dynamic_batching")
    groups = list(config.instance_group)
    group = groups[0] if len(groups) == 1 else None
    text = config.parameters[threads_key].string_value.strip() if threads_key in config.parameters else ""
    return Candidate(
        max_batch_size=config.max_batch_size,
        dynamic_batching=batching and config.max_batch_size > 0,
        max_queue_delay_us=config.dynamic_batching.max_queue_delay_microseconds if batching else 0,
        preferred=preferred_token(config.dynamic_batching.preferred_batch_size, config.max_batch_size)
        if batching
        else "max",
        instances=max(group.count, 1) if group is not None else 1,
        kind=Kind.gpu if group is not None and group.kind == mc.ModelInstanceGroup.KIND_GPU else Kind.cpu,
        threads=int(text) if text.isdigit() else 0,
    )


def default_space(start: Candidate, *, cores: int | None, gpu: bool, instance_groups: int = 1) -> SearchSpace:
    """The space searched when none is given: around the current config, sized to the machine.

    ``cores`` is the server's CPU count where known (a local server), else None. A model served
    without batching (max_batch_size 0: its inputs have a fixed first dimension) can only change
    instances and threads; a model with several instance groups keeps them as they are.
    """
    cores = cores or 4
    batched = start.max_batch_size > 0
    mbs = start.max_batch_size
    thread_values = [n for n in (1, 2, 4, 8, 16) if n <= cores] + [start.threads]
    space = SearchSpace(
        max_batch_size=_ordered("max_batch_size", (max(1, mbs // 2), mbs, mbs * 2)) if batched else (0,),
        dynamic_batching=(start.dynamic_batching, not start.dynamic_batching) if batched else (False,),
        max_queue_delay_us=_ordered("max_queue_delay_us", (0, 100, 500, 1000, 2000, 4000)),
        preferred=tuple(dict.fromkeys((start.preferred, "max", "half"))),
        instances=_ordered("instances", range(1, max(2, min(cores, 8)) + 1))
        if instance_groups == 1
        else (start.instances,),
        kind=(start.kind, Kind.cpu if start.kind is Kind.gpu else Kind.gpu)
        if gpu and instance_groups == 1
        else (start.kind,),
        threads=_ordered("threads", thread_values),
    )
    return space.with_point(start)


# --- --space DIM=V1,V2: the dimensions named are searched over those values, the others stay put ---

_SPACE_NAMES = {
    "max_batch_size": "max_batch_size",
    "dynamic_batching": "dynamic_batching",
    "queue_delay_us": "max_queue_delay_us",
    "max_queue_delay_us": "max_queue_delay_us",
    "preferred": "preferred",
    "preferred_batch_size": "preferred",
    "instances": "instances",
    "kind": "kind",
    "threads": "threads",
}
_BOOLS = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}


def parse_space(items: Sequence[str], start: Candidate) -> SearchSpace:
    """``["instances=1,2", "queue_delay_us=500,4000"]`` → that space; unnamed settings keep ``start``'s value."""
    chosen: dict[str, tuple] = {name: (getattr(start, name),) for name in DIMENSIONS}
    named: set[str] = set()
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in _SPACE_NAMES:
            raise UserInputError(
                f"--space {item[:60]!r}: expected NAME=V1,V2 with NAME one of {', '.join(sorted(_SPACE_NAMES))}"
            )
        name = _SPACE_NAMES[key]
        if name in named:
            raise UserInputError(f"--space names {key} twice")
        named.add(name)
        texts = [v.strip() for v in raw.split(",") if v.strip()]
        if not texts or len(texts) > 32:
            raise UserInputError(f"--space {key}: give 1 to 32 values, e.g. {key}=1,2")
        chosen[name] = _ordered(name, (_parse_value(name, key, text) for text in texts))
    if start.max_batch_size == 0 and (named & {"max_batch_size", "dynamic_batching"}):
        values = chosen["max_batch_size"] + tuple(v for v in chosen["dynamic_batching"] if v)
        if any(values):
            raise UserInputError(
                "this model is served without batching (max_batch_size 0: its inputs have a fixed first "
                "dimension), so max_batch_size and dynamic_batching cannot change"
            )
    return SearchSpace(**chosen)


def _parse_value(name: str, key: str, text: str):
    lowered = text.lower()
    try:
        if name == "dynamic_batching":
            return _BOOLS[lowered]
        if name == "kind":
            return Kind(lowered)
        if name == "preferred":
            check_preferred(lowered)
            return lowered
        if not re.fullmatch(r"[0-9]{1,7}", text):
            raise ValueError
        value = int(text)
    except (KeyError, ValueError) as exc:
        hint = str(exc) if name == "preferred" else "see `tritium tune --help`"
        raise UserInputError(f"--space {key}: {text[:40]!r} is not a valid value", hint=hint) from None
    if name == "max_batch_size" and value < 1:
        raise UserInputError(
            f"--space {key}: 0 would change the model's input shapes", hint="use dynamic_batching=off"
        )
    if name == "instances" and value < 1:
        raise UserInputError(f"--space {key}: {value} is not allowed (at least 1)")
    if name == "instances" and value > 64:
        raise UserInputError(f"--space {key}: {value} instances is more than this command tries (64)")
    return value


# --- configs ---


def apply_candidate(config: mc.ModelConfig, candidate: Candidate, threads_key: str) -> mc.ModelConfig:
    """A copy of ``config`` (as Triton loaded it) set to ``candidate``: what a load request sends.

    Everything else the config holds (inputs, version policy, other batcher fields, parameters) is kept,
    so the server loads exactly the model it loaded before with only the searched settings changed.
    """
    out = mc.ModelConfig()
    out.CopyFrom(config)
    c = candidate.effective()
    if config.max_batch_size > 0:
        out.max_batch_size = c.max_batch_size
    if c.dynamic_batching:
        out.dynamic_batching.max_queue_delay_microseconds = c.max_queue_delay_us
        out.dynamic_batching.preferred_batch_size[:] = c.preferred_sizes()
    else:
        out.ClearField("dynamic_batching")
    if len(out.instance_group) == 1:
        group = out.instance_group[0]
        group.count = c.instances
        group.kind = c.kind.proto
        if c.kind is Kind.cpu:
            del group.gpus[:]
    _set_threads(out, c.threads, threads_key)
    return out


def _set_threads(config: mc.ModelConfig, threads: int, key: str) -> None:
    if threads:
        config.parameters[key].string_value = str(threads)
    elif key in config.parameters:
        del config.parameters[key]


@dataclass(frozen=True)
class Change:
    setting: str
    before: object
    after: object

    def __str__(self) -> str:
        return f"{self.setting}: {self.before} → {self.after}"


def changes(start: Candidate, chosen: Candidate) -> list[Change]:
    a, b = start.effective(), chosen.effective()
    out = []
    for name in DIMENSIONS:
        before, after = getattr(a, name), getattr(b, name)
        if name == "preferred":
            before, after = a.preferred_sizes(), b.preferred_sizes()
        if before != after:
            out.append(Change(name, _show(before), _show(after)))
    return out


def _show(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


def apply_changes(
    canonical: mc.ModelConfig, start: Candidate, chosen: Candidate, threads_key: str = NATIVE_THREADS_KEY
) -> mc.ModelConfig:
    """``canonical`` with only what differs between ``start`` and ``chosen`` set (``--apply``).

    Settings the search did not change stay as the canonical config has them (a GPU instance kind the
    local runtime could not use, a version policy, warmup). Threads are written whenever the instance
    count or the threads changed: the local runtime's default divides the cores by the instances, so
    the value measured must be pinned to mean the same thing after the change.
    """
    out = mc.ModelConfig()
    out.CopyFrom(canonical)
    a, b = start.effective(), chosen.effective()
    if a == b:
        return out
    if a.max_batch_size != b.max_batch_size and out.max_batch_size > 0:
        out.max_batch_size = b.max_batch_size
    if (a.dynamic_batching, a.max_queue_delay_us, a.preferred_sizes()) != (
        b.dynamic_batching,
        b.max_queue_delay_us,
        b.preferred_sizes(),
    ):
        if b.dynamic_batching:
            out.dynamic_batching.max_queue_delay_microseconds = b.max_queue_delay_us
            if b.preferred == "max":  # Triton's default: leave the field unset, as the builder writes it
                del out.dynamic_batching.preferred_batch_size[:]
            else:
                out.dynamic_batching.preferred_batch_size[:] = b.preferred_sizes()
        else:
            out.ClearField("dynamic_batching")
    if (a.instances, a.kind) != (b.instances, b.kind) and len(out.instance_group) == 1:
        group = out.instance_group[0]
        group.count = b.instances
        if a.kind != b.kind:
            group.kind = b.kind.proto
            if b.kind is Kind.cpu:
                del group.gpus[:]
    if a.threads != b.threads or a.instances != b.instances:
        _set_threads(out, b.threads, threads_key)
    return out
