"""`tritium gateway` (run it) and `tritium routes ...` (drive its admin API)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tritium.errors import UserInputError

console = Console()
routes_app = typer.Typer(
    help="Show and change the gateway's routes (admin API, bearer token).", no_args_is_help=True
)
canary_app = typer.Typer(help="Progressive rollouts with automatic rollback.", no_args_is_help=True)
routes_app.add_typer(canary_app, name="canary")

UrlOption = Annotated[str, typer.Option("--url", envvar="TRITIUM_GATEWAY_URL", help="Gateway base URL.")]
TokenOption = Annotated[
    str | None, typer.Option("--token", envvar="TRITIUM_GATEWAY_ADMIN_TOKEN", help="Admin bearer token.")
]
DEFAULT_URL = "http://127.0.0.1:8080"


def register(app: typer.Typer, models_app: typer.Typer) -> None:
    app.command("gateway")(run_gateway)
    app.add_typer(routes_app, name="routes")


def run_gateway(
    settings_file: Annotated[Path | None, typer.Option("--settings", help="YAML settings file.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (REST and gRPC).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="REST port.")] = None,
    grpc_port: Annotated[int | None, typer.Option("--grpc-port", help="gRPC port.")] = None,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="Serve REST only.")] = False,
    admin_port: Annotated[
        int | None,
        typer.Option("--admin-port", help="Serve the admin API on this port only (default: the REST port)."),
    ] = None,
    triton_http: Annotated[str | None, typer.Option("--triton-http", help="Triton HTTP host:port.")] = None,
    triton_grpc: Annotated[str | None, typer.Option("--triton-grpc", help="Triton gRPC host:port.")] = None,
    routes: Annotated[Path | None, typer.Option("--routes", help="Route file (YAML).")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Processes sharing the ports (one core each).")
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="Where workers share canary windows and metrics.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run the gateway: KServe v2 REST and gRPC in front of Triton, with routing, canaries and shadows."""
    import uvicorn

    from tritium.gateway.app import create_app
    from tritium.gateway.http_protocol import uvicorn_options
    from tritium.gateway.routes import load_table
    from tritium.gateway.settings import load_settings

    settings = load_settings(
        settings_file,
        host=host,
        http_port=port,
        grpc_port=grpc_port,
        admin_port=admin_port,
        triton_http_url=triton_http,
        triton_grpc_url=triton_grpc,
        route_file=routes,
        workers=workers,
        state_dir=state_dir,
    )
    if no_grpc:
        settings = settings.model_copy(update={"grpc_port": None})
    table = load_table(settings.route_file)  # a bad route file fails here, in one line
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    grpc_text = f", gRPC {settings.host}:{settings.grpc_port}" if settings.grpc_port is not None else ""
    console.print(
        f"gateway on REST {settings.host}:{settings.http_port}{grpc_text} -> Triton {settings.triton_http_url} / "
        f"{settings.triton_grpc_url}; {len(table.routes)} route(s) from {settings.route_file}"
        + (
            "; admin API disabled (no admin token)"
            if not settings.admin_token
            else f"; admin API on port {settings.admin_port}"
            if settings.admin_port is not None
            else ""
        )
        + (f"; {settings.workers} workers" if settings.workers > 1 else "")
    )
    if settings.workers > 1:
        _run_workers(settings, log_level)
        return
    app = create_app(settings)
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.http_port,
            **uvicorn_options(settings.max_connections),
            log_level=log_level.lower(),
            access_log=False,
            lifespan="on",
        )
    except SystemExit:
        if app.startup_error is not None:  # uvicorn has logged it in one line; exit with its code
            raise SystemExit(app.startup_error.exit_code) from None
        raise


def _run_workers(settings, log_level: str) -> None:  # type: ignore[no-untyped-def]
    """Several gateway processes on the same ports (SO_REUSEPORT for gRPC, one shared socket for REST).

    They share the route file (changes under a file lock, picked up by the others within
    `route_refresh_s`), canary windows and metrics (in the state directory); one of them at a time
    runs the canary controller.
    """
    import shutil
    import sqlite3
    import tempfile

    import uvicorn

    from tritium.errors import UnavailableError
    from tritium.gateway.app import unbindable
    from tritium.gateway.http_protocol import uvicorn_options
    from tritium.gateway.metrics import MULTIPROCESS_DIR_VARIABLE
    from tritium.gateway.settings import pass_to_workers, startup_failure_file
    from tritium.gateway.shared_outcomes import SharedOutcomes

    if 0 in (settings.http_port, settings.grpc_port, settings.admin_port):
        raise UserInputError(
            "--workers needs fixed ports: every worker must serve the same ones",
            hint="pass --port, --grpc-port (or --no-grpc) and --admin-port (if any) other than 0",
        )
    for name, port in (
        ("REST", settings.http_port),
        ("gRPC", settings.grpc_port),
        ("admin", settings.admin_port),
    ):
        why = unbindable(settings.host, port) if port is not None else None
        if why is not None:
            raise UnavailableError(
                f"cannot serve {name} on {settings.host}:{port}: {why}",
                hint="choose another port, or stop what listens there",
            )
    made_state_dir = settings.state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="tritium-gateway-")) if made_state_dir else settings.state_dir
    metrics_dir = state_dir / "metrics"
    try:
        shutil.rmtree(metrics_dir, ignore_errors=True)  # values of an earlier run would add up with these
        metrics_dir.mkdir(parents=True)
        SharedOutcomes(state_dir / "outcomes.sqlite", "supervisor")  # the workers' shared windows open
    except (OSError, sqlite3.Error) as exc:
        raise UserInputError(
            f"cannot use {state_dir} as the workers' state directory: {getattr(exc, 'strerror', None) or exc}",
            hint="pass a writable --state-dir",
        ) from None
    os.environ[MULTIPROCESS_DIR_VARIABLE] = str(metrics_dir)
    pass_to_workers(settings.model_copy(update={"state_dir": state_dir}), log_level, state_dir)
    failure = startup_failure_file(state_dir)
    failure.unlink(missing_ok=True)
    try:
        uvicorn.run(
            "tritium.gateway.app:worker_app",
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.http_port,
            **uvicorn_options(settings.max_connections),
            log_level=log_level.lower(),
            access_log=False,
            lifespan="on",
        )
        if failure.exists():  # uvicorn stopped every worker and has logged the reason
            raise SystemExit(int(failure.read_text().split()[0]))
    finally:
        if made_state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)


def _client(url: str, token: str | None):  # type: ignore[no-untyped-def]
    from tritium.gateway.admin_client import AdminClient

    return AdminClient(url, token)


def _targets_text(route: dict) -> str:
    return ", ".join(
        f"{t['alias']}={t['model']}:{t['version'] or '*'} {t['weight']}%" for t in route["targets"]
    )


def _print_route(model: str, route: dict) -> None:
    console.print(f"[bold]{model}[/]: {_targets_text(route)}")
    if route.get("shadow"):
        s = route["shadow"]
        console.print(f"  shadow {s['alias']}={s['model']}:{s['version'] or '*'} x{s['fraction']}")
    if route.get("canary"):
        c = route["canary"]
        percent = {"promoted": 100, "progressing": c["policy"]["steps"][max(c["step"], 0)]}.get(c["state"], 0)
        console.print(f"  canary {c['stable']} -> {c['canary']}: {c['state']} at {percent}% {c['reason']}")


@routes_app.command("list")
def list_routes(url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """List the routes."""
    with _client(url, token) as client:
        routes = client.call("GET", "/routes")["routes"]
    table = Table("model", "targets", "shadow", "canary")
    for model, route in routes.items():
        canary = route.get("canary") or {}
        shadow = route.get("shadow")
        table.add_row(
            model,
            _targets_text(route),
            f"{shadow['model']}:{shadow['version'] or '*'} x{shadow['fraction']}" if shadow else "-",
            canary.get("state", "-"),
        )
    console.print(table)


@routes_app.command("show")
def show_route(model: str, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Show one route, its canary and the canary's current window."""
    with _client(url, token) as client:
        data = client.call("GET", f"/routes/{model}")
    _print_route(model, data["route"])
    for alias, window in (data.get("window") or {}).items():
        p99 = "-" if window["p99_ms"] is None else f"{window['p99_ms']:.1f} ms"
        console.print(
            f"  window {alias}: {window['requests']} requests, error rate {window['error_rate']:.3f}, p99 {p99}"
        )


@routes_app.command("compare")
def compare_route(
    model: str,
    minutes: Annotated[float, typer.Option(help="Window: the last N minutes (at most 60).")] = 10.0,
    reference: Annotated[str | None, typer.Option(help="The arm the others are compared with.")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """A/B statistics of a route's arms: error rates and latencies with intervals, significance."""
    query = f"?minutes={minutes}" + (f"&reference={reference}" if reference else "")
    with _client(url, token) as client:
        data = client.call("GET", f"/routes/{model}/compare{query}")
    console.print(_comparison_tables(data))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.2f}"


def _interval(interval: dict | None, scale: float = 1000.0, digits: int = 2) -> str:
    return (
        "-"
        if interval is None
        else f"[{interval['low'] * scale:.{digits}f}, {interval['high'] * scale:.{digits}f}]"
    )


def _comparison_tables(data: dict) -> Table:
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(data["since"]))
    arms = Table(title=f"{data['model']}: each arm since {since}", title_justify="left")
    said = any(arm["feedback"]["judged"] or arm["feedback"]["rewarded"] for arm in data["arms"])
    columns = ["arm", "requests", "errors", "error rate [95 %]", "p50 ms [95 %]", "p99 ms [95 %]"]
    for column in columns + (["accuracy [95 %] (n)", "mean reward [95 %] (n)"] if said else []):
        arms.add_column(column, justify="right")
    for arm in data["arms"]:
        row = [
            arm["arm"], str(arm["requests"]), str(arm["errors"]),
            f"{arm['error_rate']:.4f} {_interval(arm['error_rate_interval'], 1.0, 4)}",
            f"{_ms(arm['p50_s'])} {_interval(arm['p50_interval'])}",
            f"{_ms(arm['p99_s'])} {_interval(arm['p99_interval'])}",
        ]  # fmt: skip
        if said:
            f = arm["feedback"]
            accuracy = (
                "-"
                if f["accuracy"] is None
                else f"{f['accuracy']:.3f} {_interval(f['accuracy_interval'], 1.0, 3)}"
            )
            reward = (
                "-"
                if f["mean_reward"] is None
                else f"{f['mean_reward']:.3f} {_interval(f['mean_reward_interval'], 1.0, 3)}"
            )
            row += [f"{accuracy} ({f['judged']})", f"{reward} ({f['rewarded']})"]
        arms.add_row(*row)
    for diff in data["differences"]:
        p_errors = "-" if diff["error_rate_p_value"] is None else f"{diff['error_rate_p_value']:.4f}"
        p_latency = "-" if diff["latency_p_value"] is None else f"{diff['latency_p_value']:.4f}"
        still = "-" if diff["requests_still_needed"] is None else str(diff["requests_still_needed"])
        said_p = "".join(
            f", {what} p = {diff[key]:.4f}"
            for what, key in (("accuracy", "accuracy_p_value"), ("reward", "reward_p_value"))
            if diff[key] is not None
        )
        arms.caption = (arms.caption or "") + (
            f"{diff['arm']} vs {diff['reference']}: error rate {diff['error_rate_difference']:+.4f} "
            f"(p = {p_errors}), latency p = {p_latency}{said_p}, requests per arm still needed: {still}\n"
        )
    shadow = data.get("shadow")
    if shadow and shadow.get("compare"):
        mean = "-" if shadow["mean_agreement"] is None else f"{shadow['mean_agreement']:.4f}"
        arms.caption = (arms.caption or "") + (
            f"shadow {shadow['alias']}: {shadow['compare']} agreement with the primary {mean} over "
            f"{shadow['rows']} rows ({shadow['undecodable']} answers not comparable)\n"
        )
    return arms


@routes_app.command("apply")
def apply_routes(file: Path, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Create or replace the routes of a route file (same format as the gateway's route file)."""
    from tritium.gateway.routes import load_table, table_to_data

    if not file.is_file():
        raise UserInputError(f"route file {file} does not exist")
    table = table_to_data(load_table(file))
    with _client(url, token) as client:
        for model, route in table["routes"].items():
            client.call("PUT", f"/routes/{model}", route)
            console.print(f"applied {model}: {_targets_text(route)}")


@routes_app.command("delete")
def delete_route(model: str, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Delete a route (the name then passes through to Triton unchanged)."""
    with _client(url, token) as client:
        client.call("DELETE", f"/routes/{model}")
    console.print(f"deleted route {model}")


def _parse_weights(pairs: list[str]) -> dict[str, int]:
    weights = {}
    for pair in pairs:
        alias, sep, value = pair.partition("=")
        if not sep or not value.strip().isdigit():
            raise UserInputError(f"bad weight {pair!r}", hint="write ALIAS=PERCENT, e.g. stable=90 canary=10")
        weights[alias.strip()] = int(value)
    return weights


@routes_app.command("set-weights")
def set_weights(
    model: str,
    weights: Annotated[list[str], typer.Argument(help="ALIAS=PERCENT pairs adding up to 100.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Set the traffic split of a route, e.g. `tritium routes set-weights digits stable=90 canary=10`."""
    with _client(url, token) as client:
        data = client.call("POST", f"/routes/{model}/weights", {"weights": _parse_weights(weights)})
    _print_route(model, data["route"])


@routes_app.command("shadow")
def set_shadow(
    model: str,
    target_model: Annotated[
        str | None, typer.Option("--model", help="Shadow model (default: same name).")
    ] = None,
    version: Annotated[str, typer.Option(help="Shadow version.")] = "",
    fraction: Annotated[float, typer.Option(help="Share of requests mirrored (0..1).")] = 1.0,
    alias: Annotated[str, typer.Option(help="Shadow alias (metrics label).")] = "shadow",
    off: Annotated[bool, typer.Option("--off", help="Stop mirroring.")] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Mirror a fraction of a route's requests to a shadow target (answers discarded, outcomes counted)."""
    shadow = (
        None
        if off
        else {"alias": alias, "model": target_model or model, "version": version, "fraction": fraction}
    )
    with _client(url, token) as client:
        data = client.call("POST", f"/routes/{model}/shadow", {"shadow": shadow})
    _print_route(model, data["route"])


@canary_app.command("start")
def canary_start(
    model: str,
    stable: Annotated[str, typer.Option(help="Alias of the stable target.")] = "stable",
    canary: Annotated[str, typer.Option(help="Alias of the canary target.")] = "canary",
    steps: Annotated[str | None, typer.Option(help="Percent steps, e.g. 5,25,50,100.")] = None,
    window_s: Annotated[
        float | None, typer.Option("--window", help="Seconds per step (and judging window).")
    ] = None,
    min_requests: Annotated[int | None, typer.Option(help="Canary requests needed before judging.")] = None,
    max_error_rate_increase: Annotated[float | None, typer.Option(help="Allowed error-rate excess.")] = None,
    max_p99_ratio: Annotated[float | None, typer.Option(help="Allowed canary/stable p99 ratio.")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Start a progressive rollout that rolls back by itself on a breach."""
    body: dict = {
        "stable": stable,
        "canary": canary,
        "window_s": window_s,
        "min_requests": min_requests,
        "max_error_rate_increase": max_error_rate_increase,
        "max_p99_ratio": max_p99_ratio,
    }
    if steps:
        try:
            body["steps"] = [int(s) for s in steps.split(",")]
        except ValueError:
            raise UserInputError(
                f"bad --steps {steps!r}", hint="write percentages like 5,25,50,100"
            ) from None
    with _client(url, token) as client:
        data = client.call(
            "POST", f"/routes/{model}/canary", {k: v for k, v in body.items() if v is not None}
        )
    _print_route(model, data["route"])


@canary_app.command("promote")
def canary_promote(
    model: str, reason: str = "manual", url: UrlOption = DEFAULT_URL, token: TokenOption = None
) -> None:
    """Send all traffic to the canary now."""
    _canary_decision(model, "promote", reason, url, token)


@canary_app.command("rollback")
def canary_rollback(
    model: str, reason: str = "manual", url: UrlOption = DEFAULT_URL, token: TokenOption = None
) -> None:
    """Send all traffic back to the stable target now."""
    _canary_decision(model, "rollback", reason, url, token)


def _canary_decision(model: str, action: str, reason: str, url: str, token: str | None) -> None:
    with _client(url, token) as client:
        data = client.call("POST", f"/routes/{model}/canary/{action}", {"reason": reason})
    _print_route(model, data["route"])


@canary_app.command("status")
def canary_status(model: str, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Show the canary state and its current window."""
    show_route(model, url, token)


@routes_app.command("models")
def models(url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """List the models of Triton's repository and their state."""
    with _client(url, token) as client:
        index = client.call("GET", "/models")["models"]
    table = Table("model", "version", "state", "reason")
    for entry in index:
        table.add_row(
            entry.get("name", ""), entry.get("version", ""), entry.get("state", ""), entry.get("reason", "")
        )
    console.print(table)


@routes_app.command("load")
def load(model: str, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Load (or reload) a model in Triton, over gRPC."""
    with _client(url, token) as client:
        client.call("POST", f"/models/{model}/load")
    console.print(f"loaded {model}")


@routes_app.command("unload")
def unload(model: str, url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Unload a model from Triton, over gRPC."""
    with _client(url, token) as client:
        client.call("POST", f"/models/{model}/unload")
    console.print(f"unloaded {model}")


@routes_app.command("audit")
def audit(url: UrlOption = DEFAULT_URL, token: TokenOption = None, as_json: bool = False) -> None:
    """Show recent route changes: who, what, when."""
    with _client(url, token) as client:
        records = client.call("GET", "/audit")["records"]
    if as_json:
        console.print_json(json.dumps(records))
        return
    table = Table("at", "who", "action", "model", "detail")
    for r in records:
        table.add_row(r["at"], r["who"], r["action"], r["model"], r["detail"])
    console.print(table)


__all__ = ["register"]
