"""`tritium serve` and `tritium models load/unload`."""

from __future__ import annotations

import signal
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tritium.errors import UnavailableError

console = Console()

DEFAULT_GRPC_URL = "127.0.0.1:8001"


class Runtime(str, Enum):
    local = "local"
    docker = "docker"


class Stop(Exception):
    """Raised by the signal handlers to leave the serving loop."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def _tail(path: Path, stop: threading.Event) -> None:
    """Stream the server log to the console until ``stop`` is set."""
    while not path.exists() and not stop.is_set():
        time.sleep(0.1)
    with open(path, errors="replace") as log:
        while not stop.is_set():
            line = log.readline()
            if line:
                console.out(line.rstrip("\n"), highlight=False)
            else:
                time.sleep(0.2)


def _print_models(triton, repository: Path) -> None:
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
    for skipped in getattr(getattr(triton, "derivation", None), "skipped", []):
        table.add_row(skipped.name, "", "[yellow]SKIPPED[/]", skipped.reason)
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
    http_port: Annotated[int, typer.Option(help="HTTP port (0: a free one).")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port (0: a free one).")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Metrics port (0: a free one).")] = 8002,
    log_file: Annotated[
        Path | None, typer.Option(help="Write Triton's log here instead of the console.")
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="Where the runtime repository goes (default: a temporary directory).")
    ] = None,
    image: Annotated[str | None, typer.Option(help="Triton image for --runtime docker.")] = None,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 180.0,
    check: Annotated[bool, typer.Option("--check", help="Infer once on every model, then stop.")] = False,
) -> None:
    """Serve a model repository on Triton until Ctrl-C or SIGTERM."""
    ports = {
        "http_port": http_port or None,
        "grpc_port": grpc_port or None,
        "metrics_port": metrics_port or None,
    }
    if runtime is Runtime.docker:
        from tritium.serving.docker_runtime import DEFAULT_IMAGE, DockerTriton

        triton = DockerTriton(repository, image=image or DEFAULT_IMAGE, models=model, host=host, **ports)
    else:
        from tritium.serving.local import LocalTriton

        triton = LocalTriton(
            repository, models=model, host=host, log_file=log_file, work_dir=work_dir, **ports
        )
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    stop_tail = threading.Event()
    try:
        triton.start()
        if runtime is Runtime.local and log_file is None and not check:
            threading.Thread(target=_tail, args=(triton.log_file, stop_tail), daemon=True).start()
        with console.status("waiting for Triton to be ready"):
            triton.wait_ready(ready_timeout)
        _print_models(triton, repository)
        if check:
            _print_smoke(triton.grpc_url)
            return
        console.print("[bold]serving[/] — Ctrl-C to stop")
        while triton.is_running():
            time.sleep(0.5)
        raise UnavailableError("Triton exited unexpectedly", hint=f"see its log: {triton.log_file}")
    except Stop as stop:
        console.print(f"{stop}: stopping Triton")
    finally:
        stop_tail.set()
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        triton.stop()
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
    app.command()(serve)
    models_app.command()(load)
    models_app.command()(unload)
