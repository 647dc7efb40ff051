"""The trading service (issue 12): paper parity with the backtester, replay, risk controls, reconciliation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marketsynth.data.store import open_store
from marketsynth.testing.fake_market import read_kline_csv
from marketsynth.timeframes import parse_timeframe
from marketsynth.trading.brokers.base import Balance, Broker, Position
from marketsynth.trading.brokers.paper import PaperBroker
from marketsynth.trading.costs import Costs
from marketsynth.trading.engine import backtest
from marketsynth.trading.service import risk
from marketsynth.trading.service.clock import ReplayClock
from marketsynth.trading.service.loop import Market, TradingService
from marketsynth.trading.service.reconcile import reconcile
from marketsynth.trading.strategies import create_strategy


@pytest.fixture(scope="module")
def btc(btc_csv) -> pd.DataFrame:
    return read_kline_csv(btc_csv).iloc[:800].reset_index(drop=True)


def paper_service(store, bars, *, costs, stop_loss=None, funding=None, limits=None):
    broker = PaperBroker()
    broker.add_market("BTCUSDT:1h", "BTCUSDT", capital=10_000.0, costs=costs, stop_loss=stop_loss, funding=funding)
    market = Market("BTCUSDT:1h", "BTCUSDT", parse_timeframe("1h"),
                    create_strategy("sma-crossover", {"fast": 10, "slow": 30}), 10_000.0)
    start = bars["time"].iat[0]
    clock = ReplayClock(start, bars["time"].iat[-1] + pd.Timedelta(hours=1))
    service = TradingService(store=store, broker=broker, markets=[market], limits=limits or risk.Limits(),
                             clock=clock, exchange="binance", history_bars=10)
    return service, broker


@pytest.mark.parametrize("stop_loss,funding", [(None, None), (0.02, 0.0001)])
def test_paper_replay_matches_the_backtest(tmp_path, btc, stop_loss, funding):
    costs = Costs.binance(slippage_bps=2)
    with open_store(tmp_path / "s.duckdb") as store:
        store.write_bars("binance", "BTCUSDT", "1h", btc)
        service, broker = paper_service(store, btc, costs=costs, stop_loss=stop_loss, funding=funding)
        service.run()
        ledger = broker.ledger("BTCUSDT:1h")
        curves = ledger.curves()
        expected = backtest(btc, create_strategy("sma-crossover", {"fast": 10, "slow": 30}), costs=costs,
                            stop_loss=stop_loss, funding=funding)
        trades = [t for t in ledger.trades]
        done = expected.trades[expected.trades["exit_reason"] != "end"]
        assert len(trades) == len(done) > 5
        assert [t[1] for t in trades] == done["exit_bar"].tolist()
        np.testing.assert_array_equal(np.array([t[8] for t in trades]), done["pnl"].to_numpy())
        np.testing.assert_array_equal(curves["equity"][:-1], expected.equity["equity"].to_numpy()[:-1])
        # the store holds every prediction, and each order filled at the next bar's open
        assert len(store.predictions()) == len(btc)
        orders = store.orders()
        assert set(orders["status"]) <= {"filled", "submitted", "cancelled"}
        fills = store.fills()
        assert len(fills) == (orders["status"] == "filled").sum() > 5
        positions = store.positions()
        assert positions["quantity"].iat[0] == pytest.approx(ledger.q)


class _Exchange(Broker):
    """A broker whose account holds a position the store knows nothing about."""

    def place(self, order):
        raise AssertionError("a halted service must not open positions")

    def cancel(self, symbol, client_id):
        return None

    def lookup(self, symbol, client_id):
        return None

    def positions(self):
        return {"BTCUSDT": Position("BTCUSDT", 0.5, 100.0, 0.0, 1.0)}

    def balance(self):
        return Balance(10_000.0, 10_000.0)

    def server_time_ms(self):
        return 0


def test_reconciliation_mismatch_halts_reduce_only(tmp_path, btc):
    with open_store(tmp_path / "s.duckdb") as store:
        store.write_bars("binance", "BTCUSDT", "1h", btc)
        market = Market("BTCUSDT:1h", "BTCUSDT", parse_timeframe("1h"),
                        create_strategy("sma-crossover", {"fast": 10, "slow": 30}), 10_000.0)
        clock = ReplayClock(btc["time"].iat[0], btc["time"].iat[200])
        service = TradingService(store=store, broker=_Exchange(), markets=[market], limits=risk.Limits(),
                                 clock=clock, exchange="binance", history_bars=10, mode="live")
        problems = reconcile(service)
        assert problems and "store holds +0 units but the exchange +0.5" in problems[0]
        assert service.risk.halted and "reconciliation mismatch" in service.risk.halt_reason
        service.run()  # every buy the strategy wants is refused: the service only reduces
        assert store.orders().empty and store.service_state()["risk"]["halted"]


def test_live_after_an_outage_only_the_newest_candle_trades(tmp_path, btc):
    """Candles that closed while the service could not trade (an exchange outage) warm the strategy but are not
    traded late: the next step processes only the newest closed candle."""
    from marketsynth.trading.service.clock import LiveClock

    hour = pd.Timedelta(hours=1)
    now = [btc["time"].iat[300] + hour]
    with open_store(tmp_path / "s.duckdb") as store:
        store.write_bars("binance", "BTCUSDT", "1h", btc.iloc[:301])
        broker = PaperBroker()
        broker.add_market("BTCUSDT:1h", "BTCUSDT", capital=10_000.0, costs=Costs.binance())
        market = Market("BTCUSDT:1h", "BTCUSDT", parse_timeframe("1h"),
                        create_strategy("sma-crossover", {"fast": 5, "slow": 20}), 10_000.0)
        clock = LiveClock(time=lambda: now[0].timestamp(), sleep=lambda seconds: None)
        service = TradingService(store=store, broker=broker, markets=[market], limits=risk.Limits(), clock=clock,
                                 exchange="binance", history_bars=50)
        assert service.step(now[0]) == 0  # started after bar 300 closed: it waits for the next close
        store.write_bars("binance", "BTCUSDT", "1h", btc.iloc[301:302])
        now[0] = btc["time"].iat[301] + hour
        assert service.step(now[0]) == 1  # the normal case: one new candle, traded
        store.write_bars("binance", "BTCUSDT", "1h", btc.iloc[302:400])  # 98 candles closed during an outage
        now[0] = btc["time"].iat[399] + hour
        assert service.step(now[0]) == 1  # only the newest of them
        service.flush()
        decided = store.predictions()["decided_at"]
        assert len(decided) == 2 and int(decided.max()) == int(now[0].value // 1_000_000)
        first_missed = int((btc["time"].iat[302] + hour).value // 1_000_000)
        orders = store.orders()
        assert not ((orders["created_at"] >= first_missed) & (orders["created_at"] < decided.max())).any()


class _Unconfirmed(_Exchange):
    """A broker that cannot confirm any placement and never shows the order afterwards."""

    def __init__(self):
        self.placed = []

    def place(self, order):
        from marketsynth.errors import OrderStateUnknown

        self.placed.append(order.client_id)
        raise OrderStateUnknown("no answer and no trace of the order", client_id=order.client_id)

    def positions(self):
        return {}


def test_an_order_the_exchange_never_confirms_halts_the_service(tmp_path, btc):
    with open_store(tmp_path / "s.duckdb") as store:
        store.write_bars("binance", "BTCUSDT", "1h", btc)
        market = Market("BTCUSDT:1h", "BTCUSDT", parse_timeframe("1h"),
                        create_strategy("sma-crossover", {"fast": 5, "slow": 20}), 10_000.0)
        broker = _Unconfirmed()
        clock = ReplayClock(btc["time"].iat[0], btc["time"].iat[400])
        service = TradingService(store=store, broker=broker, markets=[market], limits=risk.Limits(),
                                 clock=clock, exchange="binance", history_bars=10, mode="live")
        service.run()
        first = broker.placed[0]
        assert service.risk.halted and first in service.risk.halt_reason and "still unknown" in service.risk.halt_reason
        assert store.order(first)["status"] == "unknown"
        assert len(broker.placed) <= 2  # halted reduce-only: no new entries after the halt
        assert store.service_state()["risk"]["halted"]
