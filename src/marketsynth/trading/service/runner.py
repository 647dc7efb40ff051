"""Build and run the trading service from its settings: every bad input is one ``MarketSynthError`` line before
anything trades (unknown strategy, symbol or model; a model of the wrong kind; ``--live`` without keys; a key file
readable by others; a store that cannot be written)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from marketsynth.config import TradeSettings
from marketsynth.data.store import open_store
from marketsynth.errors import ConfigError, ModelError, StoreError
from marketsynth.timeframes import parse_timeframe
from marketsynth.trading.backtest_job import make_strategy
from marketsynth.trading.brokers.paper import PaperBroker
from marketsynth.trading.costs import Costs
from marketsynth.trading.service import risk
from marketsynth.trading.service.api import ServiceAPI
from marketsynth.trading.service.clock import LiveClock
from marketsynth.trading.service.lock import ServiceLock
from marketsynth.trading.service.loop import Market, TradingService, market_key
from marketsynth.trading.service.monitoring import ServiceMetrics
from marketsynth.trading.service.reconcile import reconcile

log = logging.getLogger("marketsynth.trading.service")


def build_markets(settings: TradeSettings) -> list[Market]:
    markets, keys = [], set()
    shares = [m.capital_share for m in settings.markets]
    free = 1.0 - sum(s for s in shares if s is not None)
    unset = sum(1 for s in shares if s is None)
    if free < -1e-9 or (unset and free <= 0):
        raise ConfigError("trade.markets: the capital_share values add up to more than 1; lower them")
    for m in settings.markets:
        key = market_key(m.symbol, m.interval)
        if key in keys:
            raise ConfigError(f"trade.markets: {key} is listed twice; trade each symbol × interval once")
        keys.add(key)
        checkpoint = None
        if m.model is not None:
            path = Path(m.model)
            if not path.exists():
                raise ConfigError(f"trade.markets {key}: model checkpoint {path} not found; train one with "
                                  "'marketsynth train' or fix the path")
            from marketsynth.checkpoint import load_checkpoint

            try:
                checkpoint = load_checkpoint(path, device="cpu")
            except ModelError as exc:
                raise ModelError(f"trade.markets {key}: {exc}") from None
        strategy = make_strategy(m.strategy, m.params, allow_short=m.allow_short, checkpoint=checkpoint)
        share = m.capital_share if m.capital_share is not None else free / unset
        markets.append(Market(key, m.symbol, parse_timeframe(m.interval), strategy, settings.capital * share))
    return markets


def funding_of(settings: TradeSettings, store, symbol: str):
    text = settings.funding.strip().lower()
    if text == "none":
        return None
    if text == "auto":
        frame = store.read_funding(settings.exchange, symbol)
        return None if frame.empty else pd.Series(frame["rate"].to_numpy(), index=pd.DatetimeIndex(frame["time"]))
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"trade.funding '{settings.funding}': use none, auto or a rate per 8 h") from None


def run_service(settings: TradeSettings, *, clock=None, announce: Callable[[str], None] = print,
                stop_after: int | None = None) -> dict:
    """Run until the replay ends (or forever when live); returns a summary."""
    markets = build_markets(settings)
    clock = clock or LiveClock()
    store_target = settings.store
    duck = not store_target.startswith(("postgresql://", "postgres://"))
    if duck:
        folder = Path(store_target.removeprefix("duckdb://")).resolve().parent
        if not folder.is_dir():
            raise StoreError(f"cannot create store {store_target}: folder {folder} does not exist")
    broker, source = None, None
    if settings.mode == "live":
        from marketsynth.trading.brokers import exchange_broker

        broker = exchange_broker(settings.exchange, secrets_file=settings.secrets_file, base_url=settings.base_url,
                                 clock=clock.time, sleep=clock.sleep)
    if settings.mode == "live" or not clock.replay or settings.base_url:
        from marketsynth.data.exchanges import get_source

        source = get_source(settings.exchange, base_url=settings.base_url, sleep=clock.sleep, clock=clock.time)
    lock = ServiceLock(store_target.removeprefix("duckdb://"), host=settings.http_host,
                       port=settings.http_port) if duck else None
    api = None
    try:
        store = open_store(store_target)
        try:
            _check_writable(store)
            if broker is None:
                broker = PaperBroker()
                for m in markets:
                    broker.add_market(m.key, m.symbol, capital=m.capital, costs=_costs(settings),
                                      leverage=settings.leverage, stop_loss=settings.risk.stop_loss,
                                      take_profit=settings.risk.take_profit, funding=funding_of(settings, store,
                                                                                                 m.symbol),
                                      sizing=m.strategy.sizing)
            if source is None:
                for m in markets:
                    if not store.read_bars(settings.exchange, m.symbol, m.tf).shape[0]:
                        raise ConfigError(f"the store {store.url} holds no {settings.exchange} {m.symbol} "
                                          f"{m.tf.name} candles to replay; fetch them first (marketsynth fetch)")
            shortest = min(m.tf.seconds for m in markets)
            metrics = ServiceMetrics(loop_interval_seconds=shortest, timeframe_seconds=shortest)
            limits = risk.Limits(**settings.risk.model_dump())
            service = TradingService(store=store, broker=broker, markets=markets, limits=limits, clock=clock,
                                     exchange=settings.exchange, source=source, leverage=settings.leverage,
                                     metrics=metrics, history_bars=settings.history_bars, mode=settings.mode)
            service.poll_delay = 0.0 if clock.replay else settings.poll_seconds
            api = ServiceAPI(service, settings.http_host, settings.http_port).start()
            if lock is not None:
                lock.update(host=api.host, port=api.port)
            problems = reconcile(service)
            announce(f"trading service ({settings.mode}, {', '.join(m.key for m in markets)}) on "
                     f"http://{api.host}:{api.port}/status" + (f"; HALTED: {problems}" if problems else ""))
            started = time.perf_counter()
            try:
                service.run()
            except KeyboardInterrupt:
                announce("stopped; state is stored and a restart resumes")
            service.flush()
            service._snapshot(clock.now())
            summary = {**service.snapshot, "seconds": round(time.perf_counter() - started, 3)}
            return summary
        finally:
            if api is not None:
                api.stop()
            store.close()
    finally:
        if lock is not None:
            lock.release()
        if source is not None:
            source.close()


def _costs(settings: TradeSettings) -> Costs:
    overrides: dict[str, float] = {"slippage_bps": settings.slippage_bps}
    if settings.fee_maker is not None:
        overrides["maker_fee"] = settings.fee_maker
    if settings.fee_taker is not None:
        overrides["taker_fee"] = settings.fee_taker
    return Costs.preset(settings.exchange, **overrides)


def _check_writable(store) -> None:
    try:
        store.set_state({"service_opened_at": pd.Timestamp.now(tz="UTC").isoformat()})
    except StoreError as exc:
        raise StoreError(f"the trading service cannot write its store: {exc}") from None
