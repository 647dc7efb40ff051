"""Strategy interface, registry and the shipped rule strategies (causal, both paths identical)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marketsynth.data.io import read_bars_file
from marketsynth.errors import ConfigError
from marketsynth.trading.strategies import STRATEGIES, create_strategy, get_strategy_class, strategy_names
from marketsynth.trading.strategy import (
    History,
    Signal,
    Strategy,
    assert_causal,
    assert_event_matches_signals,
    signal_frame,
)


def closes_to_bars(closes) -> pd.DataFrame:
    closes = np.asarray(closes, dtype=float)
    opens = np.r_[closes[0], closes[:-1]]
    times = pd.date_range("2024-01-01", periods=len(closes), freq="h", tz="UTC").astype("datetime64[us, UTC]")
    return pd.DataFrame({"time": times, "open": opens, "high": np.maximum(opens, closes),
                         "low": np.minimum(opens, closes), "close": closes, "volume": 1.0})


@pytest.fixture(scope="module")
def btc(btc_csv):
    return read_bars_file(btc_csv).iloc[:8000].reset_index(drop=True)


class Example(Strategy):
    name = "example"
    lookback: int = 24
    threshold: float = 0.5
    mode: str = "fast"


def test_parameters_are_class_attributes_coerced_to_their_defaults_type():
    strategy = Example(lookback="10", threshold="0.25", allow_short="yes")
    assert strategy.params() == {"lookback": 10, "threshold": 0.25, "mode": "fast", "allow_short": True}
    assert Example().params()["lookback"] == 24 and Example.lookback == 24  # the class default is untouched
    assert Example(lookback=12.0).lookback == 12


def test_unknown_parameter_suggests_the_closest_name():
    with pytest.raises(ConfigError) as info:
        create_strategy("sma-crossover", {"fats": 10})
    assert str(info.value) == ("unknown parameter 'fats' for sma-crossover (did you mean fast?); its parameters: "
                               "fast, slow, allow_short")


@pytest.mark.parametrize("params, match", [({"lookback": "ten"}, "must be an integer"),
                                           ({"lookback": 2.5}, "must be an integer"),
                                           ({"allow_short": "maybe"}, "true or false"),
                                           ({"threshold": "x"}, "must be a number")])
def test_bad_parameter_values(params, match):
    with pytest.raises(ConfigError, match=match):
        Example(**params)


def test_registry_did_you_mean():
    assert {"buy-and-hold", "sma-crossover"} <= set(strategy_names())
    with pytest.raises(ConfigError, match="did you mean sma-crossover"):
        get_strategy_class("sma-crosover")
    with pytest.raises(ConfigError, match="fast < slow"):
        create_strategy("sma-crossover", {"fast": 50, "slow": 20})


def test_sma_acts_on_crosses_and_is_flat_before_the_first():
    # fast=1 (the close itself) vs slow=3: the close starts above its average, so no cross until it dips below
    closes = [10, 11, 12, 13, 14, 9, 8, 7, 12, 15, 16]
    bars = closes_to_bars(closes)
    long_only = create_strategy("sma-crossover", {"fast": 1, "slow": 3}).signals(bars)["target"].tolist()
    # slow SMA from bar 2: 11, 12, 13, 12, 10.33, 8, 9, 11.33, 14.33; the close is above until bar 5
    assert long_only == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]  # first cross (down) on bar 5: flat; up on bar 8
    shorts = create_strategy("sma-crossover", {"fast": 1, "slow": 3, "allow_short": True}).signals(bars)
    assert shorts["target"].tolist() == [0, 0, 0, 0, 0, -1, -1, -1, 1, 1, 1]
    assert create_strategy("sma-crossover", {"fast": 1, "slow": 3}).warmup == 4


@pytest.mark.parametrize("name, params", [("buy-and-hold", {}), ("sma-crossover", {"fast": 10, "slow": 40}),
                                          ("sma-crossover", {"fast": 5, "slow": 30, "allow_short": True})])
def test_every_shipped_strategy_is_causal_and_both_paths_agree(btc, name, params):
    assert_causal(create_strategy(name, params), btc)
    assert_event_matches_signals(lambda: create_strategy(name, params), btc)


def test_all_registered_strategies_are_causal(btc):
    for name in STRATEGIES:
        strategy = create_strategy(name)
        if strategy.needs_model or strategy.learns:
            continue  # needs a model or a fit; their own tests check them
        assert_causal(strategy, btc)


def test_causality_helper_catches_look_ahead():
    class Peek(Strategy):
        name = "peek"

        def signals(self, bars):
            up = (bars["close"].shift(-1) > bars["close"]).astype(float)
            return signal_frame(up.to_numpy())

    with pytest.raises(AssertionError, match="reads later bars"):
        assert_causal(Peek(), closes_to_bars(np.linspace(10, 20, 50) + np.sin(np.arange(50))))


def test_sma_event_state_rebuilds_on_a_new_history(btc):
    strategy = create_strategy("sma-crossover", {"fast": 5, "slow": 20, "allow_short": True})
    expected = strategy.signals(btc)["target"].to_numpy()
    assert expected[30] != 0  # the first cross is early, so a wrong S[-1] would show
    history = History(btc, 0)
    for start in (3000, 19, 100):  # a later start, then earlier ones (a reused instance); bar 19 reads S[-1]
        for i in range(start, start + 300):
            history._n = i + 1
            assert strategy.on_bar(history).target == expected[i]


def test_default_on_bar_uses_signals():
    class OnlySignals(Strategy):
        name = "only-signals"

        def signals(self, bars):
            return signal_frame(np.where(bars["close"] > 10, 1.0, 0.0), np.full(len(bars), 0.7))

    bars = closes_to_bars([9, 11, 9])
    assert OnlySignals().on_bar(History(bars, 2)) == Signal(1.0, 0.7)


def test_registry_names_match_the_classes_and_load_lazily():
    import subprocess
    import sys

    for name in STRATEGIES:
        assert STRATEGIES[name].name == name
    code = ("import sys, marketsynth.trading.engine, marketsynth.trading.strategies as s; "
            "s.create_strategy('sma-crossover'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # a rule-based backtest does not import torch
