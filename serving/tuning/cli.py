"""`tritium tune`: find the serving config (batching, queue delay, instances, threads) under a latency SLO.

Imports only typer, rich and the option enums at module level (the CLI registers every command whatever
is installed); the work happens in :mod:`tritium.serving.tuning.session`.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from tritium.errors import ConstraintNotMetError, UserInputError
from tritium.serving.tuning.options import Mode, Objective

if TYPE_CHECKING:
    from tritium.serving.tuning.search import Evaluation, Point
    from tritium.serving.tuning.session import TuneResult, TuneSettings
    from tritium.serving.tuning.space import Candidate

console = Console()


class _Progress:
    """One line per candidate as it finishes; a status line while it runs."""

    def __init__(self, status) -> None:
        self.status = status

    def candidate_started(self, index: int, candidate: Candidate) -> None:
        self.status.update(f"candidate {index}: {escape(candidate.label())} — loading")

    def level_measured(self, index: int, point: Point) -> None:
        self.status.update(
            f"candidate {index}: concurrency {point.concurrency}: {point.throughput:,.0f} req/s, "
            f"p99 {point.p99_ms:.2f} ms"
        )

    def candidate_done(self, index: int, evaluation: Evaluation) -> None:
        best = max(evaluation.points, key=lambda p: p.throughput, default=None)
        measured = f"up to {best.throughput:,.0f} req/s" if best else evaluation.status.value
        why = f" — {escape(evaluation.reason)}" if evaluation.reason else ""
        console.print(
            f"  {index}. {escape(evaluation.candidate.label())}: {measured}{why}",
            highlight=False,
            soft_wrap=True,
        )


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def tune(
    model: Annotated[str, typer.Argument(help="Model to tune (as the server names it).")],
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="Version to tune (default: latest served).", min=1)
    ] = None,
    triton: Annotated[
        str,
        typer.Option(
            "--triton", "--url", help="gRPC address of the Triton (Triton itself, not the gateway)."
        ),
    ] = "127.0.0.1:8001",
    repository: Annotated[
        Path,
        typer.Option(
            "--repository",
            "-r",
            help="Canonical repository with the model's files (found by itself for a local `tritium serve`).",
            envvar="TRITIUM_REPOSITORY",
        ),
    ] = Path("model_repository"),
    objective: Annotated[
        Objective,
        typer.Option(help="throughput: most req/s within --p99-ms; latency: lowest p99 at --min-throughput."),
    ] = Objective.throughput,
    p99_ms: Annotated[
        float | None, typer.Option("--p99-ms", help="p99 latency limit in ms.", min=0.001)
    ] = None,
    min_throughput: Annotated[
        float | None, typer.Option("--min-throughput", help="Requests/s the config must sustain.", min=0.001)
    ] = None,
    mode: Annotated[
        Mode, typer.Option(help="quick: climb from the current config; brute: the grid.")
    ] = Mode.quick,
    budget_minutes: Annotated[
        float,
        typer.Option(
            "--budget-minutes", help="Start no candidate expected to end past this.", min=0.05, max=1440
        ),
    ] = 10.0,
    space: Annotated[
        list[str] | None,
        typer.Option(
            "--space",
            help="Search only these values, e.g. --space instances=1,2 --space queue_delay_us=500,4000 "
            "(max_batch_size, dynamic_batching on/off, queue_delay_us, preferred max/half/quarter/4+8, "
            "instances, kind cpu/gpu, threads); settings not named stay as they are.",
        ),
    ] = None,
    seconds: Annotated[float, typer.Option(help="Seconds per concurrency level.", min=1, max=600)] = 3.0,
    max_concurrency: Annotated[
        int,
        typer.Option(
            "--max-concurrency", help="Highest concurrency tried (1, 2, 4, ... up to it).", min=1, max=1024
        ),
    ] = 64,
    in_place: Annotated[
        bool,
        typer.Option(
            "--in-place", help="Tune the live model itself (all its versions reload; restored at the end)."
        ),
    ] = False,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the chosen settings into the canonical config.pbtxt.")
    ] = False,
    reload: Annotated[
        bool, typer.Option("--reload", help="With --apply: load the model again with them.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Report folder (default builds/<model>/tune-<id>).")
    ] = None,
) -> None:
    """Find the serving config of a model version under a latency SLO, on a running Triton."""
    if reload and not apply:
        raise UserInputError("--reload goes with --apply (it loads the config --apply writes)")
    settings = _settings(
        model, version, triton, repository, objective, p99_ms, min_throughput, mode, budget_minutes,
        space or [], seconds, max_concurrency, in_place,
    )  # fmt: skip
    from tritium.serving.tuning import report
    from tritium.serving.tuning.session import run_tune

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM puts things back like Ctrl-C
    try:
        console.print(
            f"tuning [bold]{escape(model)}[/] on Triton at {escape(settings.url)}: {mode.value} search, "
            f"{escape(settings.constraints.describe())}, budget {budget_minutes:g} min",
            highlight=False,
        )
        with console.status("starting") as status:
            result = run_tune(settings, _Progress(status))
    except KeyboardInterrupt:
        console.print("interrupted: the server serves the original config", highlight=False)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    paths = report.write(result, output or Path("builds") / model / f"tune-{result.id}")
    console.print(report.table(result))
    for note in report.notes(result):
        console.print(f"[red]{escape(note)}[/]", highlight=False, soft_wrap=True)
    _print_outcome(result)
    console.print(
        f"report: {paths['markdown']}  record: {paths['json']}  plot: {paths['plot'] or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if result.chosen is None:
        _raise_not_met(result)
    if apply:
        _apply(result, paths["json"], reload)


def _settings(
    model, version, triton, repository, objective, p99_ms, min_throughput, mode, budget_minutes,
    space, seconds, max_concurrency, in_place,
) -> TuneSettings:  # fmt: skip
    from tritium.serving.tuning.search import Budget, Constraints
    from tritium.serving.tuning.session import TuneSettings

    return TuneSettings(
        model=model,
        url=triton.removeprefix("grpc://"),
        repository=repository,
        version=version,
        objective=objective,
        constraints=Constraints(p99_ms, min_throughput),
        mode=mode,
        budget=Budget(budget_minutes * 60),
        space=tuple(space),
        seconds=seconds,
        max_concurrency=max_concurrency,
        in_place=in_place,
    )


def _print_outcome(result: TuneResult) -> None:
    from tritium.serving.tuning.space import changes

    s = result.settings
    chosen, start = result.chosen, result.search.start
    stop = {
        "converged": "no neighbour of the best config beats it",
        "exhausted": "every candidate measured",
        "budget": "the budget ran out",
    }[result.search.stop.value]
    measured = len(result.search.evaluations)
    of = f" of the grid's {result.search.planned}" if result.search.planned is not None else ""
    console.print(f"search stopped: {stop} ({measured} candidates measured{of})", highlight=False)
    if chosen is not None:
        point = chosen.best(s.objective, s.constraints)
        base = start.best(s.objective, s.constraints)
        versus = (
            f"; the current config: {base.throughput:,.0f} req/s, p99 {base.p99_ms:.2f} ms"
            if base is not None and chosen is not start
            else ""
        )
        console.print(
            f"[bold green]chosen:[/] {escape(chosen.candidate.label())} — {point.throughput:,.0f} req/s at "
            f"p99 {point.p99_ms:.2f} ms (concurrency {point.concurrency}){versus}",
            highlight=False,
            soft_wrap=True,
        )
        diff = changes(result.start, chosen.candidate)
        console.print(
            "changes: "
            + (", ".join(escape(str(c)) for c in diff) or "none (the current config is the best found)"),
            highlight=False,
            soft_wrap=True,
        )
        if chosen.candidate.max_batch_size < result.start.max_batch_size:
            console.print(
                f"[yellow]note:[/] max_batch_size goes down to {chosen.candidate.max_batch_size}: requests "
                "carrying more items than that will be refused",
                highlight=False,
            )
    v = result.validity
    sets = ", ".join(v.machine["instruction_sets"]) or "no AVX2"
    console.print(
        f"valid for: {escape(v.server)}; backend: {escape(v.backend)}; machine: {escape(v.machine['cpu'])}, "
        f"{v.machine['cores']} cores ({sets})",
        highlight=False,
        soft_wrap=True,
    )
    for note in v.notes:
        console.print(f"  - {escape(note)}", highlight=False, soft_wrap=True)


def _raise_not_met(result: TuneResult) -> None:
    from tritium.serving.tuning.search import ranked

    s = result.settings
    measured = [e for e in result.search.evaluations if e.closest(s.constraints) is not None]
    if not measured:
        raise ConstraintNotMetError(
            "no candidate could be measured (each was refused or answered wrongly: reasons above)",
            hint="fix the model or narrow --space; the server serves the original config",
        )
    closest = ranked(measured, s.objective, s.constraints)[0]
    point = closest.closest(s.constraints)
    raise ConstraintNotMetError(
        f"no candidate met {s.constraints.describe()}; closest: {closest.candidate.label()}, "
        f"p99 {point.p99_ms:.2f} ms at {point.throughput:,.0f} req/s (concurrency {point.concurrency})",
        hint="relax the limit, widen --space or add hardware; nothing was applied",
    )


def _apply(result: TuneResult, record_path: Path, reload: bool) -> None:
    from tritium.serving.tuning.apply import apply_result
    from tritium.serving.tuning.apply import reload as reload_model

    applied = apply_result(result, json.loads(record_path.read_text()))
    if applied.config_path is None:
        console.print("--apply: nothing to write, the current config is the best found")
        return
    console.print(
        f"applied to {applied.config_path}; tuning record {applied.record_path}",
        highlight=False,
        soft_wrap=True,
    )
    if reload:
        how = reload_model(result)
        console.print(f"reloaded [bold]{escape(result.settings.model)}[/] ({how})", highlight=False)
    else:
        console.print(
            f"not reloaded: `tritium models load {escape(result.settings.model)} --url "
            f"{escape(result.settings.url)}` serves it (or pass --reload)",
            highlight=False,
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    app.command()(tune)
