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
    from marketsynth.cli import (
        data_cmds,
        evaluate_cmd,
        experiment_cmds,
        fetch_cmd,
        init_cmd,
        loglik_cmd,
        model_cmds,
        pipeline_cmds,
        scenarios_cmd,
        trade_cmds,
        trading_cmds,
    )

    for module in (init_cmd, fetch_cmd, data_cmds, model_cmds, loglik_cmd, evaluate_cmd, scenarios_cmd, pipeline_cmds,
                   trading_cmds, experiment_cmds, trade_cmds):
        module.register(app)


_register_commands()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings are one line each on stderr: what happened and what was done about it."""
    err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point. Usage errors are typer's (exit 2); our errors are one line (exit 2)."""
    warnings.showwarning = _show_warning
    try:
        app(args=argv, standalone_mode=True)
    except MarketSynthError as exc:
        if state.debug:
            raise
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted; stored data is intact and a re-run resumes where this one stopped")
        return 130
    except SystemExit as exc:  # typer's normal exit and its usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
