"""The `tritium` command: one CLI, one subcommand per concern.

Each concern registers its own commands; errors from any of them are printed as one line and
mapped to the exit code of their class (see :mod:`tritium.errors`).
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from tritium.errors import TritiumError
from tritium.extras import extra_for_missing

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
    # Each concern's cli module imports only typer and rich at module level, so every command is
    # registered whatever extras are installed; an import error here is a bug and must crash.
    from tritium.builder import cli as builder_cli
    from tritium.gateway import cli as gateway_cli
    from tritium.release import cli as release_cli
    from tritium.serving import cli as serving_cli

    builder_cli.register(app, models_app)
    serving_cli.register(app, models_app)
    gateway_cli.register(app, models_app)
    release_cli.register(app, models_app)


def _print_error(exc: TritiumError) -> int:
    # escape: messages quote user text and hints like `pip install 'tritium[serve]'`, not markup
    err_console.print(f"[bold red]error:[/] {escape(exc.one_line())}", highlight=False, soft_wrap=True)
    return exc.exit_code


def _usage_errors() -> tuple[type[Exception], ...]:
    # typer >= 0.2x vendors its own click (typer._click), whose errors are not click's: catch both,
    # or every mistyped option ends in a traceback.
    import click

    return (click.ClickException, getattr(typer, "TyperException", click.ClickException))


def _command(argv: list[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    _register()
    args = sys.argv[1:] if argv is None else argv
    try:
        # Not standalone, click returns the code of a `typer.Exit(code)` (and of Ctrl-C: 130) instead of
        # exiting; a command that finishes returns None.
        code = app(args=args, standalone_mode=False)
    except TritiumError as exc:
        return _print_error(exc)
    except ModuleNotFoundError as exc:
        missing = extra_for_missing(exc, command=_command(args))
        if missing is None:
            raise
        return _print_error(missing)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except Exception as exc:  # usage errors: a bad option value, an unknown option
        if isinstance(exc, _usage_errors()):
            exc.show()
            return exc.exit_code
        raise
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
