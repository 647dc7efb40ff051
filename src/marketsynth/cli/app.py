"""The typer app. Errors are caught once here: one line on stderr, exit code 2, traceback only with --debug."""

from __future__ import annotations

import sys
import warnings

import typer

from marketsynth import __version__
from marketsynth.cli.common import console, err_console, state
from marketsynth.errors import MarketSynthError

app = typer.Typer(
    name="marketsynth",
    help="Synthetic crypto market data: collect real candles, learn generative models, generate and evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"marketsynth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback when something fails."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    state.debug = debug


def _register_commands() -> None:
    from marketsynth.cli import data_cmds, fetch_cmd, init_cmd

    for module in (init_cmd, fetch_cmd, data_cmds):
        module.register(app)
    try:
        from marketsynth.cli import model_cmds
    except ImportError:  # the model commands arrive with the models
        return
    model_cmds.register(app)


_register_commands()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings are one line each on stderr: what happened and what was done about it."""
    err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    warnings.showwarning = _show_warning
    try:
        app(args=argv, standalone_mode=False)
    except MarketSynthError as exc:
        if state.debug:
            raise
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted; stored data is intact and a re-run resumes where this one stopped")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, EOFError):
        return 1
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
