"""`tritium serve` and `tritium models load/unload`."""

from __future__ import annotations

import signal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tritium.errors import UnavailableError, UserInputError

if TYPE_CHECKING:
    from tritium.serving.runtime import TritonRuntime

console = Console()

DEFAULT_GRPC_URL = "127.0.0.1:8001"


class Runtime(str, Enum):
    local = "local"
    docker = "docker"


class Restart(str, Enum):
    no = "no"
    on_failure = "on-failure"  # Docker's name for the same policy


class Stop(Exception):
    """Raised by the signal handlers to leave the serving loop."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def _print_log_line(line: str) -> None:
    console.out(line, highlight=False)


def _print_models(triton: TritonRuntime, repository: Path) -> None:
    from tritium.serving.control import TritonControl

    with TritonControl(triton.grpc_url) as control:
        states = control.index()
    console.print(f"[bold]Triton[/] serving {repository}", soft_wrap=True)
    table = Table()
    for column in ("model", "version", "state", "reason"):
        table.add_column(column)
    for state in states:
        style = "green" if state.state == "READY" else "red"
        table.add_row(state.name, state.version, f"[{style}]{state.state or '-'}[/]", state.reason)
    for name, reason in triton.skipped_models.items():
        table.add_row(name, "", "[yellow]SKIPPED[/]", reason)
    console.print(table)
    console.print(
        f"HTTP {triton.http_url}   gRPC {triton.grpc_url}   metrics {triton.metrics_url}", soft_wrap=True
    )


def _print_smoke(grpc_url: str) -> None:
    from tritium.serving.smoke import smoke

    table = Table(title="One inference per model", title_justify="left")
    for column in ("model", "version", "outputs", "latency ms"):
        table.add_column(column)
    results = smoke(grpc_url)
    for result in results:
        shapes = ", ".join(f"{name} {list(shape)}" for name, shape in result.outputs.items())
        table.add_row(result.model, result.version, shapes, f"{result.latency_ms:.1f}")
    console.print(table)
    if not results:
        raise UnavailableError("no model is ready to infer on", hint="see the reasons above")


def _runtime(
    runtime: Runtime,
    repository: Path,
    *,
    models: list[str] | None,
    host: str,
    ports: dict[str, int | None],
    image: str | None,
    log_file: Path | None,
    work_dir: Path | None,
) -> TritonRuntime:
    """The one place that knows the runtime classes; everything after uses :class:`TritonRuntime`."""
    if runtime is Runtime.docker:
        for flag, value in (("--log-file", log_file), ("--work-dir", work_dir)):
            if value is not None:
                raise UserInputError(
                    f"{flag} applies to --runtime local only",
                    hint="the container's log streams to the console",
                )
        from tritium.serving.docker_runtime import DEFAULT_IMAGE, DockerTriton

        return DockerTriton(repository, image=image or DEFAULT_IMAGE, models=models, host=host, **ports)
    if image is not None:
        raise UserInputError("--image applies to --runtime docker only")
    from tritium.serving.local import LocalTriton

    return LocalTriton(repository, models=models, host=host, log_file=log_file, work_dir=work_dir, **ports)


def serve(
    repository: Annotated[Path, typer.Option(help="Canonical model repository to serve.")] = Path(
        "model_repository"
    ),
    runtime: Annotated[Runtime, typer.Option(help="local: bundled tritonserver; docker: official image.")] = (
        Runtime.local
    ),
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Model to load (repeat); default all.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="HTTP port (0: a free one).", min=0, max=65535)] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port (0: a free one).", min=0, max=65535)] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Metrics port (0: a free one).", min=0, max=65535)] = 8002,
    log_file: Annotated[
        Path | None, typer.Option(help="Write Triton's log here instead of the console (local).")
    ] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(help="Where the runtime repository goes (local; default: a temporary directory)."),
    ] = None,
    image: Annotated[str | None, typer.Option(help="Triton image for --runtime docker.")] = None,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.", min=1)] = 180.0,
    restart: Annotated[
        Restart,
        typer.Option(help="on-failure: restart Triton when it crashes or is killed (backoff 1 s to 30 s)."),
    ] = Restart.no,
    max_restarts: Annotated[
        int | None,
        typer.Option(
            help="With --restart on-failure: give up after this many restarts in a row that did not "
            "stay up a minute (default 5).",
            min=1,
        ),
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Infer once on every model, then stop.")] = False,
) -> None:
    """Serve a model repository on Triton until Ctrl-C or SIGTERM."""
    if restart is Restart.no and max_restarts is not None:
        raise UserInputError("--max-restarts needs --restart on-failure")
    if check and restart is not Restart.no:
        raise UserInputError("--check stops after one inference per model; it does not take --restart")
    ports = {
        "http_port": http_port or None,
        "grpc_port": grpc_port or None,
        "metrics_port": metrics_port or None,
    }
    triton = _runtime(
        runtime,
        repository,
        models=model,
        host=host,
        ports=ports,
        image=image,
        log_file=log_file,
        work_dir=work_dir,
    )
    from tritium.serving.supervisor import Supervisor

    streamed = log_file is None and not check
    supervisor = Supervisor(
        triton,
        ready_timeout_s=ready_timeout,
        say=lambda line: console.print(f"[bold yellow]{escape(line)}[/]", soft_wrap=True),
        log=_print_log_line if streamed else None,
        log_hint=f"see its log: {log_file}" if log_file else "its log is above",
        restart_on_failure=restart is Restart.on_failure,
        max_restarts=max_restarts or 5,
    )
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with console.status("waiting for Triton to be ready"):
            supervisor.start()
        _print_models(triton, repository)
        if check:
            _print_smoke(triton.grpc_url)
            return
        console.print("[bold]serving[/] — Ctrl-C to stop")
        supervisor.watch(on_restarted=lambda: _print_models(triton, repository))
    except Stop as stop:
        restarted = f" (it was restarted {supervisor.restarts} time(s))" if supervisor.restarts else ""
        console.print(f"{stop}: stopping Triton{restarted}")
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


UrlOption = Annotated[str, typer.Option("--url", help="gRPC address of the Triton.")]


def load(
    name: Annotated[str, typer.Argument(help="Model to load or reload.")],
    version: Annotated[
        list[int] | None, typer.Option("--version", "-v", help="Serve only these versions.")
    ] = None,
    url: UrlOption = DEFAULT_GRPC_URL,
) -> None:
    """Load (or reload, picking up new versions) a model on a running Triton, over gRPC."""
    from tritium.serving.models import load_model, served_versions

    how = load_model(url, name, version)
    versions = ", ".join(served_versions(url, name)) or "none"
    console.print(f"loaded [bold]{name}[/] ({how}); versions ready: {versions}")


def unload(
    name: Annotated[str, typer.Argument(help="Model to unload.")],
    url: UrlOption = DEFAULT_GRPC_URL,
) -> None:
    """Unload a model from a running Triton, over gRPC."""
    from tritium.serving.models import unload_model

    unload_model(url, name)
    console.print(f"unloaded [bold]{name}[/]")


def register(app: typer.Typer, models_app: typer.Typer) -> None:
    from tritium.serving.tuning import cli as tuning_cli

    app.command()(serve)
    tuning_cli.register(app)
    models_app.command()(load)
    models_app.command()(unload)
