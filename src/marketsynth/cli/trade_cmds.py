"""``marketsynth trade``: the paper/live trading service, ``trade status`` and ``trade resume``.

The service runs in the foreground (logs on stderr). While it runs it holds the DuckDB store (one writer process);
``status`` and ``resume`` then talk to it over its local HTTP API, and read or write the store otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import signal
from pathlib import Path

import httpx
import pandas as pd
import typer

from marketsynth.cli.common import console, err_console
from marketsynth.config import TradeSettings, load_settings
from marketsynth.errors import ConfigError, StoreError
from marketsynth.timeframes import parse_timeframe, to_utc

trade_app = typer.Typer(help="Paper or live trading: the service, its status, and resuming after a halt.",
                        no_args_is_help=False, invoke_without_command=True)
log = logging.getLogger("marketsynth.trading.service")


def register(app: typer.Typer) -> None:
    app.add_typer(trade_app, name="trade")


def _settings(config: Path | None) -> TradeSettings:
    if config is None:
        default = Path("marketsynth.yaml")
        return load_settings(default).trade if default.exists() else TradeSettings()
    return load_settings(config).trade


@trade_app.callback()
def trade(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", help="marketsynth.yaml with a trade: section."),
    paper: bool = typer.Option(False, "--paper", help="Simulated fills (the default mode)."),
    live: bool = typer.Option(False, "--live", help="Real orders on the exchange (needs API keys)."),
    base_url: str = typer.Option(None, "--base-url", help="Exchange endpoint (testnet, a fake exchange)."),
    replay: bool = typer.Option(False, "--replay", help="Walk --start..--end through the loop as if live."),
    start: str = typer.Option(None, "--start", help="Replay start (UTC)."),
    end: str = typer.Option(None, "--end", help="Replay end (UTC)."),
    speed: float = typer.Option(None, "--speed", help="Replay at N times real time (default: no waiting)."),
    port: int = typer.Option(None, "--port", help="HTTP port of the status API (overrides the config)."),
    clock_url: str = typer.Option(None, "--replay-clock-url", hidden=True,
                                  help="PUT each replay time here (a fake exchange's clock control)."),
) -> None:
    """Run the trading service (see the README's 'marketsynth trade' section)."""
    if ctx.invoked_subcommand is not None:
        return
    if paper and live:
        raise ConfigError("--paper and --live exclude each other; pick one")
    settings = _settings(config)
    updates = {"mode": "live" if live else "paper" if paper else settings.mode}
    if base_url:
        updates["base_url"] = base_url
    if port is not None:
        updates["http_port"] = port
    settings = settings.model_copy(update=updates)
    clock = None
    if replay:
        if not start or not end:
            raise ConfigError("--replay needs --start and --end (UTC times, e.g. --start 2024-01-01 --end 2024-02-01)")
        from marketsynth.trading.service.clock import ReplayClock

        clock = ReplayClock(to_utc(start), to_utc(end), speed=speed, on_tick=_clock_pusher(clock_url))
    elif start or end or speed:
        raise ConfigError("--start, --end and --speed go with --replay")
    from marketsynth.trading.service.runner import run_service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):  # one line per request would drown the service's own log
        logging.getLogger(noisy).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    summary = run_service(settings, clock=clock, announce=lambda text: err_console.print(text, markup=False))
    typer.echo(json.dumps(summary, default=str))


def _clock_pusher(url: str | None):
    if not url:
        return None
    client = httpx.Client(timeout=5.0)

    def push(when: pd.Timestamp) -> None:
        client.put(url, content=when.isoformat()).raise_for_status()

    return push


@trade_app.command("status")
def status(config: Path = typer.Option(None, "--config", "-c", help="marketsynth.yaml with a trade: section.")
           ) -> None:
    """Positions, open orders, equity, last signal and risk state (asks the running service, else the store)."""
    settings = _settings(config)
    held = _held(settings)
    if held is not None:
        answer = httpx.get(f"http://{held.get('host', '127.0.0.1')}:{held['port']}/status", timeout=10.0)
        typer.echo(json.dumps(answer.json(), indent=2, default=str))
        return
    from marketsynth.data.store import open_store

    with open_store(settings.store, read_only=not settings.store.startswith("postgres")) as store:
        state = store.service_state()
        positions = store.positions()
        open_orders = store.orders(status=("pending", "submitted", "partially_filled", "unknown"))
    risk = state.get("risk", {})
    equity = float(positions["equity"].sum()) if len(positions) else None
    report = {"running": False, "equity": None if equity is None or not math.isfinite(equity) else round(equity, 2),
              "positions": positions[["market", "symbol", "quantity", "entry_price", "equity"]].to_dict("records"),
              "open_orders": open_orders[["client_id", "market", "side", "quantity", "status"]].to_dict("records"),
              "last_signal": state.get("signals", {}),
              "risk": {k: risk.get(k) for k in ("halted", "halt_reason", "daily_stopped", "high_water")}}
    typer.echo(json.dumps(report, indent=2, default=str))


@trade_app.command("resume")
def resume(config: Path = typer.Option(None, "--config", "-c", help="marketsynth.yaml with a trade: section.")
           ) -> None:
    """Clear a halt (the max-drawdown kill switch or a reconciliation mismatch)."""
    settings = _settings(config)
    held = _held(settings)
    if held is not None:
        httpx.post(f"http://{held.get('host', '127.0.0.1')}:{held['port']}/resume", timeout=10.0).raise_for_status()
        console.print("resume requested from the running service")
        return
    from marketsynth.data.store import open_store
    from marketsynth.trading.service import risk

    with open_store(settings.store) as store:
        state = risk.RiskState.from_dict(store.service_state().get("risk"))
        was = state.halt_reason
        positions = store.positions()
        equity = float(positions["equity"].sum()) if len(positions) else None
        risk.resume(state, equity)
        store.set_state({"risk": state.to_dict()})
    console.print(f"resumed (was: {was})" if was else "the service was not halted; nothing to resume")


def _held(settings: TradeSettings) -> dict | None:
    if settings.store.startswith(("postgresql://", "postgres://")):
        return None
    from marketsynth.trading.service.lock import held_by

    return held_by(settings.store.removeprefix("duckdb://"))


def interval_seconds(interval: str) -> int:
    return parse_timeframe(interval).seconds


__all__ = ["StoreError", "register", "trade_app"]
