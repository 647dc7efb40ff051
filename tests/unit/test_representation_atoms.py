"""Exact atoms survive the model's float32 round trip: open == previous close, zero wicks."""

from __future__ import annotations

import numpy as np

from marketsynth.data.io import read_bars_file
from marketsynth.representation import make_representation
from tests.conftest import shared_file


def test_atoms_drawn_in_model_space_decode_to_exact_candles():
    bars = read_bars_file(shared_file("BTCUSDT_1h.csv")).iloc[-2000:].reset_index(drop=True)
    rep = make_representation("log-returns", scaling="standard").fit(bars)
    scaled = rep.encode(bars).astype(np.float32)  # what a model outputs: float32 in scaled space
    candles = rep.decode(scaled[None, 1:], start_price=float(bars["close"].iloc[0]))[0]
    o, h, c = candles[:, 0], candles[:, 1], candles[:, 3]
    real = bars.iloc[1:][["open", "high", "low", "close"]].to_numpy()
    real_gap_zero = np.mean(real[1:, 0] == real[:-1, 3])
    assert real_gap_zero > 0.2  # Binance/Bybit 1h: about a third to a half of the bars
    assert np.mean(o[1:] == c[:-1]) == real_gap_zero
    assert np.mean(h == np.maximum(o, c)) == np.mean(real[:, 1] == np.maximum(real[:, 0], real[:, 3]))
    np.testing.assert_allclose(candles[:, :4], real, rtol=1e-5)
