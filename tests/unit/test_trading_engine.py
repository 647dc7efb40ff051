"""Backtest engine: hand-computed fills, fees, slippage, funding, stops, liquidation; both paths agree."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from marketsynth.data.io import read_bars_file
from marketsynth.errors import ConfigError, DataError
from marketsynth.splits import walk_forward
from marketsynth.trading.costs import Costs, liquidation_price
from marketsynth.trading.engine import backtest, backtest_paths, summarize_paths, walk_forward_backtest
from marketsynth.trading.strategies import create_strategy
from marketsynth.trading.strategy import History, LookAheadError, Signal, Strategy, signal_frame

FREE = Costs.zero()


def make_bars(opens, highs=None, lows=None, closes=None, start="2024-01-01 00:00") -> pd.DataFrame:
    """Hourly bars; highs/lows default to the max/min of open and close, closes to the next open."""
    opens = np.asarray(opens, dtype=float)
    closes = np.r_[opens[1:], opens[-1]] if closes is None else np.asarray(closes, dtype=float)
    highs = np.maximum(opens, closes) if highs is None else np.asarray(highs, dtype=float)
    lows = np.minimum(opens, closes) if lows is None else np.asarray(lows, dtype=float)
    times = pd.date_range(start, periods=len(opens), freq="h", tz="UTC").astype("datetime64[us, UTC]")
    return pd.DataFrame({"time": times, "open": opens, "high": highs, "low": lows, "close": closes,
                         "volume": 1.0})


class Scripted(Strategy):
    """Targets given as a list, one per bar; both paths."""

    name = "scripted"

    def __init__(self, targets, **params):
        self._targets = [float(t) for t in targets]
        super().__init__(**params)

    def signals(self, bars):
        return signal_frame(np.asarray(self._targets[: len(bars)]))

    def on_bar(self, history):
        return Signal(self._targets[len(history) - 1])


def run(bars, targets, **kwargs):
    kwargs.setdefault("costs", FREE)
    strategy = Scripted(targets, allow_short=kwargs.pop("allow_short", False))
    return backtest(bars, strategy, **kwargs)


# ---------------------------------------------------------------------------------------------- fills and costs


def test_fee_is_charged_on_both_sides_and_entry_fits_the_fee():
    bars = make_bars([100, 100, 105, 110, 110])
    result = run(bars, [1, 1, 0, 0, 0], costs=Costs(taker_fee=0.001, maker_fee=0.0))
    quantity = 10_000 / (100 * 1.001)  # all equity, the entry fee included
    entry_fee = quantity * 100 * 0.001
    exit_fee = quantity * 110 * 0.001
    trade = result.trades.iloc[0]
    assert len(result.trades) == 1
    assert trade["entry_bar"] == 1 and trade["exit_bar"] == 3  # signal on close of 0 -> open of 1; 2 -> 3
    assert trade["quantity"] == pytest.approx(quantity)
    assert trade["fees"] == pytest.approx(entry_fee + exit_fee)
    assert trade["pnl"] == pytest.approx(quantity * 10 - entry_fee - exit_fee)
    assert result.final_equity == pytest.approx(10_000 + quantity * 10 - entry_fee - exit_fee)
    assert result.equity["cash"].iat[1] == pytest.approx(10_000 - entry_fee)
    assert list(result.positions["action"]) == ["open", "close"]


def test_slippage_moves_both_fills_against_the_trader():
    bars = make_bars([100, 100, 105, 110, 110])
    result = run(bars, [1, 1, 0, 0, 0], costs=Costs(taker_fee=0, maker_fee=0, slippage_bps=10, liquidation_fee=0))
    trade = result.trades.iloc[0]
    assert trade["entry_price"] == pytest.approx(100.1)
    assert trade["exit_price"] == pytest.approx(109.89)
    quantity = 10_000 / 100.1
    assert result.final_equity == pytest.approx(10_000 + quantity * (109.89 - 100.1))


def test_short_profits_when_price_falls_and_fill_at_close():
    bars = make_bars([100, 100, 90, 80, 80])
    result = run(bars, [-1, -1, 0, 0, 0], allow_short=True, fill="close")
    trade = result.trades.iloc[0]
    # close fills: enter at bar 0's close (100), leave at bar 2's close (80)
    assert (trade["side"], trade["entry_bar"], trade["exit_bar"]) == ("short", 0, 2)
    assert trade["entry_price"] == 100 and trade["exit_price"] == 80
    assert trade["pnl"] == pytest.approx(100 * 20)
    assert result.equity["position"].iat[0] == pytest.approx(-100)


def test_position_open_at_the_end_is_closed_at_the_last_close():
    bars = make_bars([100, 101, 102, 103, 104], closes=[101, 102, 103, 104, 107])
    result = backtest(bars, create_strategy("buy-and-hold"), costs=FREE)
    trade = result.trades.iloc[0]
    assert len(result.trades) == 1
    assert trade["exit_reason"] == "end" and trade["exit_bar"] == 4 and trade["exit_price"] == 107
    assert trade["entry_price"] == 101  # the first bar's signal fills at the second bar's open
    assert result.final_equity == pytest.approx(10_000 * 107 / 101)


def test_the_last_bars_signal_is_not_filled():
    bars = make_bars([100, 100, 100, 100])
    for fill in ("open", "close"):
        result = run(bars, [0, 0, 0, 1], fill=fill)
        assert result.trades.empty and result.positions.empty
        assert result.final_equity == 10_000


def test_orders_only_on_changes_resize_and_reverse():
    bars = make_bars([100, 100, 100, 100, 100, 100, 100])
    result = run(bars, [1, 1, 0.5, 0.5, 1, -1, -1], allow_short=True)
    actions = list(result.positions["action"])
    assert actions == ["open", "reduce", "add", "close", "open", "close"]
    reduce_row = result.positions.iloc[1]
    assert reduce_row["quantity"] == pytest.approx(-50) and reduce_row["position"] == pytest.approx(50)
    # the partial close is a trade of its own; then the reversal closes the rest; then the end closes the short
    assert list(result.trades["quantity"]) == pytest.approx([50, 100, 100])
    assert list(result.trades["exit_reason"]) == ["signal", "signal", "end"]
    assert list(result.trades["side"]) == ["long", "long", "short"]


def test_adding_averages_the_entry_price():
    bars = make_bars([100, 100, 100, 200, 200])
    result = run(bars, [0.5, 0.5, 1, 1, 1])
    # 50 units at 100; at 200 the equity is 15 000, so 100 % is 75 units: add 25 at 200
    assert list(result.positions["action"]) == ["open", "add", "close"]
    assert result.positions["quantity"].iat[1] == pytest.approx(25)
    trade = result.trades.iloc[0]
    assert trade["quantity"] == pytest.approx(75)
    assert trade["entry_price"] == pytest.approx((50 * 100 + 25 * 200) / 75)
    assert trade["pnl"] == pytest.approx(75 * 200 - (50 * 100 + 25 * 200))


# ---------------------------------------------------------------------------------------------- funding


def test_funding_at_00_08_16_utc_longs_pay_positive_rates():
    # bars 06:00 … 17:00; funding times inside: 08:00 (bar 2) and 16:00 (bar 10)
    opens = [100.0] * 12
    opens[10] = 120.0
    bars = make_bars(opens, start="2024-01-01 06:00")
    long = run(bars, [1] * 12, funding=0.001)
    quantity = 10_000 / 100  # filled at 07:00
    paid = quantity * 100 * 0.001 + quantity * 120 * 0.001
    assert long.trades["funding"].iat[0] == pytest.approx(paid)
    cash = long.equity["cash"].to_numpy()
    assert cash[1] == 10_000 and cash[2] == pytest.approx(10_000 - 10) and cash[9] == pytest.approx(9_990)
    assert cash[10] == pytest.approx(10_000 - paid)
    short = run(bars, [-1] * 12, funding=0.001, allow_short=True)
    assert short.trades["funding"].iat[0] == pytest.approx(-paid)  # shorts receive positive funding
    assert short.final_equity == pytest.approx(10_000 + paid + 100 * (100 - 100))


def test_a_position_opened_at_the_funding_bar_open_does_not_pay_it():
    bars = make_bars([100.0] * 6, start="2024-01-01 06:00")  # 08:00 is bar 2
    result = run(bars, [0, 1, 1, 1, 1, 1], funding=0.001)  # signal on 07:00's close fills at 08:00's open
    assert result.trades["entry_bar"].iat[0] == 2
    assert result.trades["funding"].iat[0] == 0
    closed = run(bars, [1, 1, 0, 0, 0, 0], funding=0.001)  # closed at 09:00's open: held across 08:00
    assert closed.trades["funding"].iat[0] == pytest.approx(100 * 100 * 0.001)


def test_funding_series_by_time():
    bars = make_bars([100.0] * 24, start="2024-01-01 06:00")
    rates = pd.Series([0.002, -0.001], index=pd.to_datetime(["2024-01-01 08:00", "2024-01-01 12:00"], utc=True))
    with pytest.warns(UserWarning, match="covers"):
        result = run(bars, [1] * 24, funding=rates)
    assert result.trades["funding"].iat[0] == pytest.approx(100 * 100 * (0.002 - 0.001))


def test_funding_series_outside_the_bars_is_an_error():
    bars = make_bars([100.0] * 12)
    rates = pd.Series([0.001], index=pd.to_datetime(["2023-01-01 08:00"], utc=True))
    with pytest.raises(DataError, match="no funding time within the bars"):
        run(bars, [1] * 12, funding=rates)


# ---------------------------------------------------------------------------------------------- stops


def test_stop_and_target_in_one_bar_the_stop_wins():
    bars = make_bars([100, 100, 100, 100], highs=[100, 100, 106, 100], lows=[100, 100, 94, 100])
    result = run(bars, [1, 1, 1, 1], stop_loss=0.05, take_profit=0.05)
    trade = result.trades.iloc[0]
    assert trade["exit_reason"] == "stop_loss" and trade["exit_price"] == pytest.approx(95)
    assert trade["pnl"] == pytest.approx(-500)


def test_target_alone_fills_at_its_level():
    bars = make_bars([100, 100, 100, 100], highs=[100, 100, 106, 100], lows=[100, 100, 99, 100])
    trade = run(bars, [1, 1, 1, 1], stop_loss=0.05, take_profit=0.05).trades.iloc[0]
    assert trade["exit_reason"] == "take_profit" and trade["exit_price"] == pytest.approx(105)


def test_gap_through_a_stop_fills_at_the_open():
    bars = make_bars([100, 100, 90, 90], highs=[100, 100, 91, 90], lows=[100, 100, 88, 90], closes=[100, 100, 90, 90])
    trade = run(bars, [1, 1, 1, 1], stop_loss=0.05).trades.iloc[0]
    assert trade["exit_reason"] == "stop_loss" and trade["exit_price"] == 90 and trade["exit_bar"] == 2
    bars = make_bars([100, 100, 110, 110], closes=[100, 100, 110, 110])  # and a gap through the target
    trade = run(bars, [1, 1, 1, 1], take_profit=0.05).trades.iloc[0]
    assert trade["exit_reason"] == "take_profit" and trade["exit_price"] == 110


def test_short_stop_is_above_the_entry():
    bars = make_bars([100, 100, 100, 100], highs=[100, 100, 104, 100], lows=[100, 100, 99, 100])
    trade = run(bars, [-1] * 4, stop_loss=0.03, allow_short=True).trades.iloc[0]
    assert trade["exit_reason"] == "stop_loss" and trade["exit_price"] == pytest.approx(103)


def test_after_a_stop_the_position_stays_flat_until_the_target_changes():
    bars = make_bars([100] * 8, highs=[100] * 8, lows=[100, 100, 90, 100, 100, 100, 100, 100])
    result = run(bars, [1, 1, 1, 1, 0, 1, 1, 1], stop_loss=0.05)
    assert list(result.trades["exit_reason"]) == ["stop_loss", "end"]
    assert result.trades["entry_bar"].iat[1] == 6  # re-entered only after the 0 -> 1 change on bar 5
    assert (result.equity["position"].iloc[2:6] == 0).all()


# ---------------------------------------------------------------------------------------------- margin


def test_liquidation_price_formula():
    assert liquidation_price(100.0, 10.0, 100.0, 0.005) == pytest.approx(100 * (1 - 1 / 10) / 0.995)
    assert liquidation_price(100.0, -10.0, 100.0, 0.005) == pytest.approx(100 * (1 + 1 / 10) / 1.005)
    assert liquidation_price(100.0, 10.0, 1000.0, 0.004) == 0  # 1x long: never liquidated


def test_liquidation_at_the_price_with_its_fee():
    costs = Costs(taker_fee=0.0, maker_fee=0.0, maintenance_margin=0.005, liquidation_fee=0.002)
    bars = make_bars([100, 100, 95, 95], highs=[100, 100, 96, 95], lows=[100, 95, 89, 95])
    result = run(bars, [0.5] * 4, leverage=10, costs=costs)
    quantity, margin = 500.0, 5_000.0  # 0.5 x 10 000 x 10 = 50 000 notional at 100
    price = (100 - margin / quantity) / (1 - 0.005)
    fee = 0.002 * quantity * price
    trade = result.trades.iloc[0]
    assert trade["exit_reason"] == "liquidation" and trade["exit_price"] == pytest.approx(price)
    assert trade["fees"] == pytest.approx(fee)
    assert result.final_equity == pytest.approx(10_000 + quantity * (price - 100) - fee)
    assert result.wiped_out is None


def test_a_gap_through_the_liquidation_price_loses_only_the_margin():
    costs = Costs(taker_fee=0.0, maker_fee=0.0, maintenance_margin=0.005, liquidation_fee=0.01)
    bars = make_bars([100, 100, 70, 70], closes=[100, 100, 70, 70])
    result = run(bars, [0.5] * 4, leverage=10, costs=costs)
    trade = result.trades.iloc[0]
    assert trade["exit_reason"] == "liquidation" and trade["exit_price"] == 70
    assert trade["pnl"] == pytest.approx(-5_000)  # the margin, not 500 x 30 = 15 000
    assert result.final_equity == pytest.approx(5_000)
    assert (result.equity["equity"] >= 0).all()


def test_a_wiped_out_account_stops_trading():
    costs = Costs(taker_fee=0.0, maker_fee=0.0, maintenance_margin=0.005, liquidation_fee=0.01)
    bars = make_bars([100, 100, 70, 70, 70, 70], closes=[100, 100, 70, 70, 70, 70])
    result = run(bars, [1, 1, 0, 1, 0, 1], leverage=10, costs=costs)
    assert result.wiped_out == bars["time"].iat[2]
    assert len(result.trades) == 1 and result.final_equity == 0
    assert (result.equity["equity"] == 0).iloc[2:].all()


def test_short_at_leverage_1_is_liquidated_when_the_price_doubles():
    costs = Costs(taker_fee=0.0, maker_fee=0.0, maintenance_margin=0.004, liquidation_fee=0.0)
    prices = [100, 100, 150, 190, 195, 195]  # the liquidation price is 200 / 1.004 = 199.2
    bars = make_bars(prices, closes=prices, highs=[100, 100, 150, 190, 250, 195])
    result = run(bars, [-1] * 6, allow_short=True, costs=costs)
    trade = result.trades.iloc[0]
    assert trade["exit_reason"] == "liquidation" and trade["exit_bar"] == 4
    assert trade["exit_price"] == pytest.approx(200 / 1.004)


# ---------------------------------------------------------------------------------------------- look-ahead


class Peeking(Strategy):
    name = "peeking"

    def on_bar(self, history):
        return Signal(1.0 if history.close[len(history)] > history.close[-1] else 0.0)


class PeekingBar(Strategy):
    name = "peeking-bar"

    def on_bar(self, history):
        history.bar(len(history))
        return Signal(0.0)


class Recording(Strategy):
    name = "recording"

    def __init__(self, **params):
        super().__init__(**params)
        self.seen: list[tuple[int, float]] = []

    def on_bar(self, history):
        self.seen.append((len(history), float(history.close[-1])))
        return Signal(0.0)


def test_a_strategy_cannot_see_the_next_bar():
    bars = make_bars([100, 101, 102, 103])
    with pytest.raises(IndexError):
        backtest(bars, Peeking(), mode="event")
    with pytest.raises(LookAheadError, match="future"):
        backtest(bars, PeekingBar(), mode="event")
    recorder = Recording()
    backtest(bars, recorder, mode="event")
    assert recorder.seen == [(i + 1, bars["close"].iat[i]) for i in range(4)]
    history = History(bars, 2)
    assert len(history.frame()) == 2 and history.now == bars["time"].iat[1]
    with pytest.raises(ValueError):
        history.close[0] = 1.0  # read-only


# ---------------------------------------------------------------------------------------------- two paths


@pytest.fixture(scope="module")
def btc(btc_csv):
    return read_bars_file(btc_csv)


@pytest.mark.parametrize("fill", ["open", "close"])
def test_vectorised_and_event_paths_give_the_same_trades_and_equity(btc, fill):
    strategy = create_strategy("sma-crossover", {"fast": 12, "slow": 60, "allow_short": True})
    settings = dict(costs=Costs(slippage_bps=3), leverage=5, stop_loss=0.04, take_profit=0.09, funding=0.0001,
                    fill=fill)
    vectorised = backtest(btc, strategy, mode="vectorised", **settings)
    event = backtest(btc, create_strategy("sma-crossover", strategy.params()), mode="event", **settings)
    assert vectorised.settings["mode"] == "vectorised" and event.settings["mode"] == "event"
    reasons = set(vectorised.trades["exit_reason"])
    assert {"signal", "stop_loss", "take_profit", "end"} <= reasons
    assert len(vectorised.trades) > 300
    pd.testing.assert_frame_equal(vectorised.trades, event.trades, check_exact=True)
    pd.testing.assert_frame_equal(vectorised.equity, event.equity, check_exact=True)
    pd.testing.assert_frame_equal(vectorised.positions, event.positions, check_exact=True)
    assert (vectorised.equity["equity"] >= 0).all()


def test_high_leverage_on_real_data_liquidates_in_both_paths(btc):
    strategy = create_strategy("sma-crossover", {"fast": 24, "slow": 96, "allow_short": True})
    part = btc.iloc[:6000]
    settings = dict(leverage=50, funding=0.0003)
    vectorised = backtest(part, strategy, mode="vectorised", **settings)
    event = backtest(part, create_strategy("sma-crossover", strategy.params()), mode="event", **settings)
    assert "liquidation" in set(vectorised.trades["exit_reason"])
    pd.testing.assert_frame_equal(vectorised.trades, event.trades, check_exact=True)
    pd.testing.assert_frame_equal(vectorised.equity, event.equity, check_exact=True)


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, match", [
    ({"capital": -1}, "capital"),
    ({"capital": 0}, "capital"),
    ({"leverage": 0.5}, "leverage"),
    ({"fill": "mid"}, "fill"),
    ({"mode": "fast"}, "mode"),
    ({"stop_loss": 1.5}, "stop_loss"),
    ({"take_profit": -0.1}, "take_profit"),
    ({"costs": "binance"}, "Costs"),
])
def test_bad_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        backtest(make_bars([100] * 5), create_strategy("buy-and-hold"), **kwargs)


@pytest.mark.parametrize("field, value", [("taker_fee", -0.001), ("maker_fee", -1), ("slippage_bps", -5),
                                          ("taker_fee", float("nan")), ("maintenance_margin", 1.0)])
def test_bad_costs_are_config_errors(field, value):
    with pytest.raises(ConfigError, match=field):
        Costs(**{field: value})


def test_bad_bars_and_targets():
    with pytest.raises(DataError, match="too few"):
        backtest(make_bars([100] * 10), create_strategy("sma-crossover", {"fast": 3, "slow": 20}))
    bars = make_bars([100, 100, np.nan, 100])
    with pytest.raises(DataError, match="non-positive prices"):
        backtest(bars, create_strategy("buy-and-hold"))
    with pytest.raises(ConfigError, match="allow_short"):
        run(make_bars([100] * 4), [0, -1, 0, 0])
    with pytest.raises(ConfigError, match="-1…\\+1"):
        run(make_bars([100] * 4), [0, 2, 0, 0])

    class EventOnly(Strategy):
        name = "event-only"

        def on_bar(self, history):
            return Signal(0.0)

    with pytest.raises(ConfigError, match="no vectorised signals"):
        backtest(make_bars([100] * 4), EventOnly(), mode="vectorised")
    assert backtest(make_bars([100] * 4), EventOnly()).settings["mode"] == "event"


# ---------------------------------------------------------------------------------------------- runners, files


class FitRecorder(Strategy):
    """Learns the last training close; records what it was fitted on."""

    name = "fit-recorder"
    learns = True

    def __init__(self, **params):
        super().__init__(**params)
        self.fitted_on: pd.DataFrame | None = None

    def fit(self, bars):
        self.fitted_on = bars.copy()

    def signals(self, bars):
        return signal_frame(np.ones(len(bars)))


def test_walk_forward_fits_on_training_bars_only_and_trades_test_bars(btc):
    bars = btc.iloc[:2000].reset_index(drop=True)
    folds = walk_forward(len(bars), 3, purge=10)
    result = walk_forward_backtest(bars, FitRecorder, folds, costs=FREE)
    assert len(result.results) == 3
    for fold, strategy, fold_result in zip(folds, result.strategies, result.results, strict=True):
        first_test_time = bars["time"].iat[fold.test.start]
        assert strategy.fitted_on["time"].max() < first_test_time
        assert len(strategy.fitted_on) == fold.train_size
        assert fold_result.equity["time"].iat[0] == first_test_time
        assert len(fold_result.equity) == fold.test_size
        assert (fold_result.trades["entry_time"] > first_test_time).all()  # first test signal fills next open
        assert fold_result.equity["equity"].iat[0] == 10_000
    assert list(result.table()["fold"]) == [0, 1, 2]


def test_walk_forward_event_path_matches_the_vectorised_one(btc):
    bars = btc.iloc[:3000].reset_index(drop=True)

    def factory():
        return create_strategy("sma-crossover", {"fast": 10, "slow": 50, "allow_short": True})

    vectorised = walk_forward_backtest(bars, factory, 2, mode="vectorised", stop_loss=0.05)
    event = walk_forward_backtest(bars, factory, 2, mode="event", stop_loss=0.05)
    for a, b in zip(vectorised.results, event.results, strict=True):
        pd.testing.assert_frame_equal(a.trades, b.trades, check_exact=True)
        pd.testing.assert_frame_equal(a.equity, b.equity, check_exact=True)
        assert len(a.trades) > 5


class Units(Scripted):
    name = "units"
    sizing = "quantity"


def test_quantity_sizing_trades_units_and_reduces_what_does_not_fit():
    bars = make_bars([100, 100, 110, 110])
    result = backtest(bars, Units([2, 2, 2, 2]), costs=Costs(taker_fee=0.001, maker_fee=0.0))
    trade = result.trades.iloc[0]
    assert trade["quantity"] == 2 and trade["fees"] == pytest.approx(2 * 100 * 0.001 + 2 * 110 * 0.001)
    with pytest.warns(UserWarning, match="reduced to fit"):
        result = backtest(bars, Units([500, 500, 500, 500]), costs=FREE)
    assert result.trades["quantity"].iat[0] == pytest.approx(100)  # 10 000 of capital at 100
    assert result.reduced_orders == 1
    assert backtest(bars, Units([500] * 4), costs=FREE, leverage=5).trades["quantity"].iat[0] == 500


def test_backtest_paths_on_a_long_frame():
    paths = pd.concat([make_bars([100, 101, 102, 103]).assign(sample_id=k) for k in (7, 8)], ignore_index=True)
    results = backtest_paths(paths, create_strategy("buy-and-hold"), costs=FREE)
    assert list(results) == [7, 8]
    table = summarize_paths(results)
    assert list(table["trades"]) == [1, 1]
    assert table["final_equity"].iat[0] == pytest.approx(10_000 * 103 / 101)
    listed = backtest_paths([make_bars([100, 101, 102])] * 2, lambda: create_strategy("buy-and-hold"))
    assert list(listed) == [0, 1]


def test_write_and_summary(tmp_path):
    bars = make_bars([100, 101, 99, 103, 104, 102])
    result = run(bars, [1, 1, 0, 1, 1, 1], costs=Costs())
    folder = result.write(tmp_path / "bt")
    trades = pd.read_csv(folder / "trades.csv")
    equity = pd.read_csv(folder / "equity.csv")
    assert len(trades) == 2 and len(equity) == 6
    assert trades["entry_time"].iat[0] == "2024-01-01T01:00:00Z"
    assert json.loads((folder / "settings.json").read_text())["costs"]["taker_fee"] == 0.0005
    assert (folder / "positions.csv").exists()
    stats = result.summary()
    assert isinstance(stats, dict) and stats
