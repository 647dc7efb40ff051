"""The glow strategy: likelihood filter, latent direction and regimes learned on the training fold only, on a tiny
Glow trained through ``marketsynth.api.train`` on real BTC bars."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marketsynth import api
from marketsynth.checkpoint import Checkpoint
from marketsynth.data.io import read_bars_file
from marketsynth.errors import ConfigError, DataError
from marketsynth.features import WARMUP_BARS, bar_features
from marketsynth.models.capabilities import Likelihood
from marketsynth.models.garch import GarchModel
from marketsynth.trading import engine
from marketsynth.trading.strategies import create_strategy, get_strategy_class
from marketsynth.trading.strategies.glow import BLOCK, GlowStrategy, nearest
from marketsynth.trading.strategy import History, assert_causal, assert_event_matches_signals

TINY_GLOW = {"levels": 1, "steps_per_level": 1, "hidden": 8, "batch_size": 64}
TRAIN = 400  # bars of the training fold in most tests


@pytest.fixture(scope="module")
def bars(btc_csv, tmp_path_factory) -> pd.DataFrame:
    """700 hourly BTC candles of 2021."""
    path = tmp_path_factory.mktemp("data") / "btc_700.csv"
    pd.read_csv(btc_csv, skiprows=range(1, 12000), nrows=700).to_csv(path, index=False)
    return read_bars_file(path)


@pytest.fixture(scope="module")
def checkpoint(bars, tmp_path_factory) -> Checkpoint:
    out = tmp_path_factory.mktemp("runs") / "glow"
    api.train("glow", bars.iloc[:TRAIN], config=TINY_GLOW, epochs=1, out=out, progress=False)
    return api.load(out)


@pytest.fixture
def make(checkpoint, bars):
    """A glow strategy with the model attached, fitted on the first ``TRAIN`` bars."""

    def build(**params) -> GlowStrategy:
        strategy = GlowStrategy(**params)
        strategy.attach_model(checkpoint)
        strategy.fit(bars.iloc[:TRAIN])
        return strategy

    return build


def changed_after(bars: pd.DataFrame, start: int) -> pd.DataFrame:
    """``bars`` with every candle from ``start`` on replaced (prices scaled and reversed in time)."""
    out = bars.copy()
    tail = out.iloc[start:, 1:].to_numpy()[::-1] * np.array([1.3, 1.3, 1.3, 1.3, 2.0])
    out.iloc[start:, 1:] = tail
    return out


def learned(strategy: GlowStrategy) -> dict:
    return {k: v for k, v in strategy.state().items() if k != "training"}


# ---- learning ---------------------------------------------------------------------------------------------------
def test_fit_learns_threshold_range_direction_and_regimes_from_the_training_fold(make, bars):
    strategy = make(quantile=0.6, clusters=3)
    state = strategy.state()
    train = strategy.scores(bars.iloc[:TRAIN])
    ll = train["log_likelihood"].to_numpy()[WARMUP_BARS:]
    assert state["threshold"] == np.quantile(ll, 0.6)
    assert (state["ll_min"], state["ll_max"]) == (ll.min(), ll.max())
    assert len(state["centers"]) == 3 and len(state["centers"][0]) == 16 and len(state["traded"]) == 3
    assert state["direction"] in (-1.0, 1.0)
    assert state["latent_dim"] == int(np.nanargmax([np.nan if a is None else a
                                                    for a in state["training"]["accuracy"]]))
    # the direction is the sign of the correlation of that latent dimension with the next bar's log return
    close = bars["close"].to_numpy()[:TRAIN]
    forward = np.log(close[WARMUP_BARS + 1:] / close[WARMUP_BARS:-1])
    latent = train["latent"].to_numpy()[WARMUP_BARS:-1]
    assert np.sign(np.corrcoef(latent, forward)[0, 1]) == state["direction"]
    assert sum(state["training"]["cluster_rows"]) == TRAIN - WARMUP_BARS
    json.dumps(state)  # plain numbers only


def test_fit_reads_only_the_training_fold(make, checkpoint, bars):
    before = learned(make())
    other = GlowStrategy()
    other.attach_model(checkpoint)
    other.fit(changed_after(bars, TRAIN).iloc[:TRAIN])
    assert learned(other) == before
    # and the training fold does matter
    other.fit(bars.iloc[100:TRAIN + 100])
    assert learned(other) != before


def test_a_given_latent_dimension_and_all_regimes(make):
    strategy = make(latent_dim="3", trade_regimes="all", clusters=2)
    state = strategy.state()
    assert state["latent_dim"] == 3 and state["traded"] == [True, True]


def test_state_round_trips_through_json(make, checkpoint, bars):
    strategy = make(allow_short=True, quantile=0.3)
    restored = GlowStrategy()
    restored.load_state(json.loads(json.dumps(strategy.state())))
    restored.attach_model(checkpoint)
    assert restored.params() == strategy.params()
    pd.testing.assert_frame_equal(restored.signals(bars), strategy.signals(bars))
    with pytest.raises(ConfigError, match="not a saved glow strategy"):
        restored.load_state({"format": "something else"})


# ---- signals ----------------------------------------------------------------------------------------------------
def test_trades_only_above_the_threshold_in_traded_regimes_sized_by_the_likelihood(make, bars):
    strategy = make(allow_short=True)
    state = strategy.state()
    table = strategy.scores(bars)
    rows = table.iloc[WARMUP_BARS:]
    active = rows["target"] != 0
    assert active.any() and (~active).any()
    assert (rows.loc[active, "log_likelihood"] >= state["threshold"]).all()
    assert rows.loc[active, "traded"].all()
    assert (rows.loc[~rows["above"] | ~rows["traded"], "target"] == 0).all()
    cuts = np.asarray(state["size_cuts"])
    assert len(cuts) == 3 and (np.diff(cuts) >= 0).all() and cuts[0] >= state["threshold"]  # 4 steps by default
    size = (1 + (rows["log_likelihood"].to_numpy()[:, None] >= cuts).sum(axis=1)) / 4
    np.testing.assert_array_equal(rows["size"], size)
    assert set(np.unique(rows.loc[active, "size"])) <= {0.25, 0.5, 0.75, 1.0}  # stepped: few resizing orders
    expected = state["direction"] * np.sign(rows["latent"]) * rows["size"]
    np.testing.assert_array_equal(rows.loc[active, "target"], expected[active])
    assert (table["target"].iloc[:WARMUP_BARS] == 0).all() and table["size"].iloc[:WARMUP_BARS].isna().all()
    regimes = nearest(np.asarray(state["centers"]) + 1e-9, np.asarray(state["centers"]))
    assert list(regimes) == list(range(len(state["centers"])))
    signals = strategy.signals(bars)
    np.testing.assert_array_equal(signals["target"], table["target"])
    np.testing.assert_array_equal(signals["confidence"], table["size"])


def test_a_higher_quantile_trades_fewer_bars_and_long_only_never_shorts(make, bars):
    low = make(quantile=0.1, trade_regimes="all", allow_short=True).signals(bars)["target"]
    high = make(quantile=0.9, trade_regimes="all", allow_short=True).signals(bars)["target"]
    assert (high != 0).sum() < (low != 0).sum()
    assert (low < 0).any()
    long_only = make(quantile=0.1, trade_regimes="all").signals(bars)["target"]
    assert (long_only >= 0).all()
    np.testing.assert_array_equal(long_only, np.maximum(low, 0.0))


def test_signals_are_causal(make, bars):
    strategy = make(allow_short=True, trade_regimes="all", quantile=0.2)
    assert_causal(strategy, bars, cuts=[WARMUP_BARS, WARMUP_BARS + 1, 300, BLOCK + WARMUP_BARS, 550, 699])


def test_event_path_gives_the_vectorised_targets_bit_for_bit(make, bars):
    part = bars.iloc[:BLOCK + 80]  # crosses a block boundary
    assert_event_matches_signals(lambda: make(allow_short=True, trade_regimes="all", quantile=0.2), part)
    vectorised = engine.backtest(part, make(allow_short=True), mode="vectorised")
    event = engine.backtest(part, make(allow_short=True), mode="event")
    assert (vectorised.settings["mode"], event.settings["mode"]) == ("vectorised", "event")
    pd.testing.assert_frame_equal(vectorised.equity, event.equity)
    pd.testing.assert_frame_equal(vectorised.trades, event.trades)


def test_event_path_rebuilds_for_a_history_that_does_not_continue(make, bars):
    strategy = make(allow_short=True, trade_regimes="all", quantile=0.2)
    expected = strategy.signals(bars)
    for n in (30, 31, 300, 301, 120, BLOCK + WARMUP_BARS + 1):  # continuing, jumping ahead, going back
        signal = strategy.on_bar(History(bars, n))
        assert signal.target == expected["target"].iat[n - 1]
        assert signal.confidence == expected["confidence"].iat[n - 1]
    other = changed_after(bars, 0)  # a different series of the same length
    assert strategy.on_bar(History(other, 301)).target == strategy.signals(other.iloc[:301])["target"].iat[-1]
    assert strategy.on_bar(History(bars, WARMUP_BARS)).target == 0.0


def test_incremental_features_equal_bar_features(make, bars):
    strategy = make()
    history = History(bars, 0)
    for n in range(WARMUP_BARS + 1, 200):
        history._n = n
        strategy.on_bar(history)
    event = strategy._event
    rows = bar_features(bars.iloc[:199]).to_numpy()
    np.testing.assert_array_equal(event.block[: event.pos + 1], rows[len(rows) - 1 - event.pos:])


# ---- the model --------------------------------------------------------------------------------------------------
def test_glow_encode_gives_latent_codes_and_the_log_likelihood(checkpoint, bars):
    rows = bar_features(bars.iloc[:200]).to_numpy()
    z, ll = checkpoint.model.encode(rows)
    assert z.shape == rows.shape and z.dtype == np.float64
    np.testing.assert_array_equal(ll, checkpoint.model.log_likelihood(rows))
    back = checkpoint.model.generate_from_latent(z)[:, 0, :]
    scale = np.abs(rows).max(axis=0)  # per feature: they differ by orders of magnitude
    np.testing.assert_allclose((back - rows) / scale, 0.0, atol=1e-4)


def test_a_non_glow_checkpoint_is_one_line_config_error():
    garch = Checkpoint(path=Path("runs/garch"), model=GarchModel(), representation=None, config={})
    with pytest.raises(ConfigError) as err:
        GlowStrategy().attach_model(garch)
    message = str(err.value)
    assert "\n" not in message
    assert "--model runs/garch holds a garch checkpoint" in message
    assert "the glow strategy needs a glow model" in message and "marketsynth train --model glow" in message


def test_a_likelihood_model_of_candles_is_refused():
    class CandleDensity(Likelihood):
        name = "candle-density"
        models_candles = True

        def log_likelihood(self, features):
            return np.zeros(len(features))

    with pytest.raises(ConfigError, match="holds a candle-density checkpoint"):
        GlowStrategy().attach_model(CandleDensity())


def test_without_a_model_fit_and_signals_say_to_pass_model(bars):
    strategy = GlowStrategy()
    for call in (lambda: strategy.fit(bars), lambda: strategy.signals(bars)):
        with pytest.raises(ConfigError, match="--model") as err:
            call()
        assert "\n" not in str(err.value)


def test_a_model_trained_on_later_candles_than_the_fold_is_warned_about(checkpoint, bars):
    def fitted(end) -> GlowStrategy:
        strategy = GlowStrategy()
        strategy.attach_model(Checkpoint(path=checkpoint.path, model=checkpoint.model, representation=None,
                                         config={}, meta={"end": end.isoformat()}))
        strategy.fit(bars.iloc[:TRAIN])
        return strategy

    with pytest.warns(UserWarning, match="in-sample"):
        strategy = fitted(bars["time"].iat[-1])
    assert strategy.state()["training"]["model_trained_until"] == bars["time"].iat[-1].isoformat()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted(bars["time"].iat[TRAIN - 1])


def test_attach_model_takes_a_checkpoint_folder(checkpoint, bars):
    strategy = GlowStrategy()
    strategy.attach_model(checkpoint.path)
    strategy.fit(bars.iloc[:TRAIN])
    assert strategy.fitted


def test_signals_before_fit_and_too_few_bars_are_errors(checkpoint, bars):
    strategy = GlowStrategy()
    strategy.attach_model(checkpoint)
    with pytest.raises(ConfigError, match="not fitted"):
        strategy.signals(bars)
    with pytest.raises(DataError, match="too few for glow"):
        strategy.fit(bars.iloc[:WARMUP_BARS + 3])
    strategy.fit(bars.iloc[:TRAIN])
    with pytest.raises(DataError, match="too few for glow"):
        engine.backtest(bars.iloc[:WARMUP_BARS], strategy)


# ---- parameters and registry ------------------------------------------------------------------------------------
def test_registered_with_its_model_need():
    assert get_strategy_class("glow") is GlowStrategy
    strategy = create_strategy("glow", {"quantile": "0.7", "latent_dim": 5, "clusters": "2"})
    assert (strategy.quantile, strategy.latent_dim, strategy.clusters) == (0.7, "5", 2)
    assert GlowStrategy.learns and GlowStrategy.needs_model == "glow"
    assert strategy.warmup == WARMUP_BARS + 1


@pytest.mark.parametrize("params, message", [
    ({"quantile": 1.0}, "quantile"), ({"latent_dim": "16"}, "latent_dim"), ({"latent_dim": "x"}, "latent_dim"),
    ({"clusters": 0}, "clusters"), ({"trade_regimes": "some"}, "trade_regimes"), ({"horizon": 0}, "horizon"),
    ({"quantil": 0.5}, "did you mean quantile"),
])
def test_bad_parameters(params, message):
    with pytest.raises(ConfigError, match=message):
        GlowStrategy(**params)


# ---- walk-forward -----------------------------------------------------------------------------------------------
class Recording(GlowStrategy):
    fitted_on: list[pd.DataFrame] = []

    def fit(self, bars):
        Recording.fitted_on.append(bars.copy())
        super().fit(bars)


def test_walk_forward_never_fits_on_test_bars(checkpoint, bars):
    def factory():
        strategy = Recording(allow_short=True, clusters=3)
        strategy.attach_model(checkpoint)
        return strategy

    Recording.fitted_on = []
    result = engine.walk_forward_backtest(bars, factory, folds=2)
    assert len(result.folds) == 2 and len(Recording.fitted_on) == 2
    for fold, seen, strategy in zip(result.folds, Recording.fitted_on, result.strategies, strict=True):
        assert len(seen) == fold.train_size
        assert seen["time"].iat[-1] < bars["time"].iat[fold.test.start]
        direct = GlowStrategy(allow_short=True, clusters=3)
        direct.attach_model(checkpoint)
        direct.fit(bars.iloc[fold.train].reset_index(drop=True))
        assert learned(strategy) == learned(direct)
    before = [learned(s) for s in result.strategies]
    Recording.fitted_on = []
    changed = changed_after(bars, result.folds[-1].test.start)
    again = engine.walk_forward_backtest(changed, factory, folds=2)
    assert [learned(s) for s in again.strategies] == before
    assert sum(len(r.equity) for r in result.results) == sum(f.test_size for f in result.folds)
