"""What a build reports while it runs: typed events, emitted by the pipeline and its steps.

The pipeline knows nothing about terminals: it emits events to one sink. The CLI renders them with
rich (:mod:`tritium.builder.progress_view`); tests collect them (:class:`EventLog`). The shape
follows Model Navigator's pipeline events: stages and variants start and finish with a status,
long work reports progress on named tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from itertools import count

from tritium.builder.results import VariantStatus


@dataclass(frozen=True)
class BuildEvent:
    """Base of every event."""


@dataclass(frozen=True)
class StageStarted(BuildEvent):
    stage: str  # "loading", "baseline", "export", "variants", "profiling", "writing"
    description: str


@dataclass(frozen=True)
class StageFinished(BuildEvent):
    stage: str
    description: str
    seconds: float


@dataclass(frozen=True)
class VariantStarted(BuildEvent):
    variant: str
    kind: str
    parent: str


@dataclass(frozen=True)
class VariantFinished(BuildEvent):
    """A variant's verdict; ``reason`` is one line for a rejected or failed variant."""

    variant: str
    kind: str
    status: VariantStatus
    reason: str


class NoticeLevel(str, Enum):
    INFO = "info"
    WARNING = "warning"


@dataclass(frozen=True)
class Notice(BuildEvent):
    text: str
    level: NoticeLevel = NoticeLevel.INFO


_task_ids = count(1)


@dataclass(frozen=True)
class TaskStarted(BuildEvent):
    """Long work with a known number of units (a bar), or ``total=None`` (a spinner)."""

    task: int
    description: str
    total: int | None


@dataclass(frozen=True)
class TaskAdvanced(BuildEvent):
    task: int
    advance: int = 1
    description: str | None = None  # a new description, when the unit of work changes


@dataclass(frozen=True)
class TaskFinished(BuildEvent):
    task: int


EventSink = Callable[[BuildEvent], None]


def ignore(_: BuildEvent) -> None:
    """The sink of a build nobody watches."""


@dataclass
class EventLog:
    """A sink that keeps every event (tests, or a caller that renders afterwards)."""

    events: list[BuildEvent] = field(default_factory=list)

    def __call__(self, event: BuildEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[BuildEvent]) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def fan_out(*sinks: EventSink) -> EventSink:
    def emit(event: BuildEvent) -> None:
        for sink in sinks:
            sink(event)

    return emit


class Task:
    """A progress task bound to a sink: ``with Task(emit, "epochs", 3) as t: t.advance()``."""

    def __init__(self, emit: EventSink, description: str, total: int | None) -> None:
        self.emit = emit
        self.id = next(_task_ids)
        self.description = description
        self.total = total

    def __enter__(self) -> Task:
        self.emit(TaskStarted(self.id, self.description, self.total))
        return self

    def advance(self, advance: int = 1, description: str | None = None) -> None:
        self.emit(TaskAdvanced(self.id, advance, description))

    def describe(self, description: str) -> None:
        self.emit(TaskAdvanced(self.id, 0, description))

    def __exit__(self, *_exc) -> None:
        self.emit(TaskFinished(self.id))
