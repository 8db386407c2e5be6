"""Render a build's events on a terminal with rich: one live progress display, one log line per verdict."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from tritium.builder.events import (
    BuildEvent,
    Notice,
    NoticeLevel,
    StageFinished,
    StageStarted,
    TaskAdvanced,
    TaskFinished,
    TaskStarted,
    VariantFinished,
)
from tritium.builder.results import VariantStatus


class _Count(MofNCompleteColumn):
    """``3/8`` for a bar; nothing for a spinner (a stage of unknown length), rather than ``0/?``."""

    def render(self, task) -> Text:
        return Text("") if task.total is None else super().render(task)


class RichProgress:
    """An event sink drawing stages as spinners and tasks as bars, inside one live display.

    rich allows one live display at a time, so stages, sensitivity analyses and training epochs
    are all tasks of one :class:`~rich.progress.Progress`; a finished stage leaves a log line, a
    finished task disappears.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            _Count(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._stages: dict[str, TaskID] = {}
        self._tasks: dict[int, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.progress.stop()

    def __call__(self, event: BuildEvent) -> None:
        progress = self.progress
        if isinstance(event, StageStarted):
            self._stages[event.stage] = progress.add_task(escape(event.description), total=None)
        elif isinstance(event, StageFinished):
            task = self._stages.pop(event.stage, None)
            if task is not None:
                progress.remove_task(task)
            progress.console.log(f"{escape(event.description)} [dim]{event.seconds:.1f}s[/]")
        elif isinstance(event, TaskStarted):
            self._tasks[event.task] = progress.add_task(escape(event.description), total=event.total)
            self._show_stages(False)  # a stage's own bars say more than its spinner
        elif isinstance(event, TaskAdvanced) and event.task in self._tasks:
            update: dict = {"advance": event.advance}
            if event.description is not None:
                update["description"] = escape(event.description)
            progress.update(self._tasks[event.task], **update)
        elif isinstance(event, TaskFinished) and event.task in self._tasks:
            progress.remove_task(self._tasks.pop(event.task))
            self._show_stages(not self._tasks)
        elif isinstance(event, VariantFinished):
            progress.console.log(_verdict(event))
        elif isinstance(event, Notice):
            prefix = "[yellow]warning:[/] " if event.level is NoticeLevel.WARNING else ""
            progress.console.log(prefix + escape(event.text))

    def _show_stages(self, visible: bool) -> None:
        for task in self._stages.values():
            self.progress.update(task, visible=visible)


def _verdict(event: VariantFinished) -> str:
    if event.status is VariantStatus.ACCEPTED:
        return f"[green]✓[/] variant {escape(event.variant)} accepted"
    style, verdict = ("red", "FAILED") if event.status is VariantStatus.FAILED else ("yellow", "rejected")
    return f"[{style}]✗ variant {escape(event.variant)} {verdict}:[/] {escape(event.reason)}"
