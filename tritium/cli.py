"""The `tritium` command: one CLI, one subcommand per concern.

Each concern registers its own commands; errors from any of them are printed as one line and
mapped to the exit code of their class (see :mod:`tritium.errors`).
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from tritium.errors import TritiumError

app = typer.Typer(
    name="tritium",
    help="Optimize models, validate them against an accuracy budget, and serve them on Triton.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Inspect and control the models in a model repository.", no_args_is_help=True)
app.add_typer(models_app, name="models")

err_console = Console(stderr=True)


def _register() -> None:
    from builder import cli as builder_cli

    builder_cli.register(app, models_app)
    try:
        from serving import cli as serving_cli
    except ImportError:  # serving extra not installed
        pass
    else:
        serving_cli.register(app, models_app)
    try:
        from gateway import cli as gateway_cli
    except ImportError:  # gateway extra not installed
        pass
    else:
        gateway_cli.register(app, models_app)


def main(argv: list[str] | None = None) -> int:
    _register()
    try:
        app(args=argv, standalone_mode=False)
    except TritiumError as exc:
        err_console.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
