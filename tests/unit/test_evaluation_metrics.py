"""``evaluate`` end to end on small sets with tiny classifiers: records, verdicts, JSON, determinism."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pandas as pd
import pytest

from marketsynth.data.io import read_bars_file
from marketsynth.errors import ConfigError, DataError
from marketsynth.evaluation import (
    BENCHMARK_DISCRIMINATORS,
    PROTOCOLS,
    Discriminator,
    candle_windows,
    evaluate,
    real_vs_real_floor,
)
from marketsynth.evaluation.records import VERDICT_RULES, MetricRecord, grade
from marketsynth.progress import Recorder
from marketsynth.representation import candles_frame
from tests.conftest import shared_file
from tests.unit.evaluation_helpers import random_walk_candles

TINY = dataclasses.replace(PROTOCOLS["default"], discriminative_iterations=20, predictive_iterations=20)
KEYS = {"group", "name", "real", "synthetic", "distance", "better", "verdict", "explanation", "details"}


@functools.cache
def btc_bars() -> pd.DataFrame:
    return read_bars_file(shared_file("BTCUSDT_1h.csv")).iloc[-6000:].reset_index(drop=True)


@functools.cache
def btc_windows() -> np.ndarray:
    return candle_windows(btc_bars(), 24, stride=6)  # ~1,000 windows in time order


def run(real, synthetic, **kwargs):
    kwargs = {"seq_len": 24, "repeats": 1, "protocol": TINY, "max_windows": 300, **kwargs}
    return evaluate(real, synthetic, **kwargs)


def test_records_are_complete_json_ready_and_deterministic():
    windows = btc_windows()
    real, synthetic = windows[:500], windows[500:]
    recorder = Recorder()
    result = run(real, synthetic, progress=recorder)
    names = [r.name for r in result.records]
    for expected in ("mean return", "volatility (std of returns)", "kurtosis (excess)", "lag-1 autocorrelation",
                     "KL divergence of returns", "coverage (diversity)", "tail index (Hill)",
                     "volatility clustering", "linear autocorrelation", "leverage effect",
                     "aggregational Gaussianity, 24 bars", "discriminative score (all bar features)",
                     "predictive score", "TSTR direction", "TSTR volatility", "memorization", "candle validity"):
        assert expected in names
    data = json.loads(result.to_json())
    assert all(set(record) == KEYS for record in data["records"])
    assert all(r.verdict in ("good", "fair", "poor") for r in result.records)
    assert all(r.explanation.endswith((".", ")")) and len(r.explanation) > 40 for r in result.records)
    (start,) = [c for c in recorder.calls if c[0] == "start"]  # one stage, every step reported, none twice
    notes = [d["note"] for m, _, d in recorder.calls if m == "advance"]
    assert start[1] == "evaluate" and recorder.steps("evaluate") == start[2]["total"] - 1 == len(notes) - 1
    assert len(set(notes)) == len(notes)
    assert set(result.curves) >= {"returns", "stylized", "aggregation", "memorization"}
    assert "curves" in json.loads(result.to_json(curves=True))
    again = run(real, synthetic)
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in result.records]


def test_real_against_itself_scores_well_and_broken_data_scores_poorly():
    windows = btc_windows()
    same = run(windows, windows)
    for name in ("mean return", "volatility (std of returns)", "kurtosis (excess)", "KL divergence of returns",
                 "volatility clustering", "candle validity"):
        record = same.record(name)
        assert record.distance == pytest.approx(0.0, abs=1e-9) and record.verdict == "good", name
    assert same.record("memorization").verdict == "poor"  # the "synthetic" set contains the training data
    noise = random_walk_candles(len(windows), 24, seed=5, vol=0.03)
    noise[:, 3, 1] = noise[:, 3, 3] * 0.9  # every window has one candle with its high below the close
    bad = run(windows, noise)
    for name in ("volatility (std of returns)", "kurtosis (excess)", "KL divergence of returns", "candle validity"):
        assert bad.record(name).verdict == "poor", name
    assert bad.record("candle validity").synthetic == pytest.approx(23 / 24)
    assert bad.record("discriminative score (all bar features)").synthetic > 0.2


def test_train_windows_feed_memorization_and_tstr():
    windows = btc_windows()
    train, heldout = windows[:600], windows[650:]
    copies = run(heldout, train[:300], train_windows=train)
    assert copies.record("memorization").details["flagged"] and copies.n_train == 600
    assert copies.record("memorization").details["exact_copies"] == 300
    assert not copies.notes
    fresh = run(heldout[:150], heldout[150:], train_windows=train)
    assert not fresh.record("memorization").details["flagged"]


def test_frames_are_accepted_for_real_bars_and_synthetic_samples():
    bars = btc_bars().iloc[:700]
    synthetic = candles_frame(btc_windows()[-300:])
    result = run(bars, synthetic, max_windows=200)
    assert result.n_real == 700 - 24 and result.n_synthetic == 300
    assert list(result.to_frame().columns) == sorted(KEYS, key=list(MetricRecord.__dataclass_fields__).index)
    with pytest.raises(DataError, match="sample_id"):
        run(bars.drop(columns="time"), synthetic)


def test_short_windows_say_why_long_aggregation_is_missing():
    windows = candle_windows(btc_bars(), 12, stride=6)
    result = run(windows[:400], windows[400:], seq_len=12)
    record = result.record("aggregational Gaussianity, 24 bars")
    assert record.verdict == "n/a" and record.distance is None and "12 bars" in record.explanation
    assert any("12 bars" in note for note in result.notes)


def test_timegan_protocol_on_stock_candles():
    stock = pd.read_csv(shared_file("stock_data.csv"))[["Open", "High", "Low", "Close", "Volume"]].to_numpy()
    windows = stock[::-1][np.arange(len(stock) - 24)[:, None] + np.arange(24)][:600]
    protocol = dataclasses.replace(PROTOCOLS["timegan"], discriminative_iterations=10, predictive_iterations=10)
    result = run(windows[:300], windows[300:], protocol=protocol, discriminators=BENCHMARK_DISCRIMINATORS[:2])
    assert result.protocol == "timegan"
    assert 0 <= result.record("discriminative score (all bar features)").synthetic <= 0.5
    assert result.record("discriminative score (all bar features)").details["hidden"] == 2
    assert result.record("discriminative score (all bar features, wide GRU (hidden 32))").details["hidden"] == 32
    assert 0 < result.record("predictive score").synthetic < 1
    with pytest.raises(ConfigError, match="ret"):  # timegan sees raw columns: no 'ret' to select
        run(windows[:300], windows[300:], protocol=protocol, discriminators=[Discriminator("r", columns=("ret",))])


def test_bad_arguments_are_clear_errors():
    windows = btc_windows()
    with pytest.raises(DataError, match="seq_len is 12"):
        run(windows, windows, seq_len=12)
    with pytest.raises(DataError, match=r"\[n, L, 5\]"):
        run(windows[..., :4], windows)
    with pytest.raises(ConfigError, match="unknown protocol"):
        run(windows, windows, protocol="paper")
    with pytest.raises(ConfigError, match="repeats"):
        run(windows, windows, repeats=0)


def test_real_vs_real_floor_uses_alternating_chunks():
    result = real_vs_real_floor(btc_bars().iloc[:2400], chunk_bars=240, seq_len=24, stride=4, repeats=1,
                                protocol=TINY, max_windows=300, discriminators=BENCHMARK_DISCRIMINATORS[2:])
    assert result.n_real > 100 and result.n_synthetic > 100
    assert result.record("discriminative score (close returns only)").synthetic < 0.2
    with pytest.raises(ConfigError, match="chunk_bars"):
        real_vs_real_floor(btc_bars(), chunk_bars=10)


def test_real_vs_real_floor_phase_shifts_the_chunk_boundaries(monkeypatch):
    from marketsynth.evaluation import metrics

    monkeypatch.setattr(metrics, "evaluate", lambda real, synthetic, **_: (real, synthetic))
    bars = btc_bars().iloc[:1200]
    rows = bars[["open", "high", "low", "close", "volume"]].to_numpy()

    def first_bars(windows) -> set[int]:
        return {int(np.flatnonzero((rows == w[0]).all(axis=1))[0]) for w in windows}

    sides = {}
    for phase in (0, 120):
        real, synthetic = real_vs_real_floor(bars, chunk_bars=240, phase=phase, seq_len=24)
        sides[phase] = first_bars(real), first_bars(synthetic)
        # every "synthetic" window lies inside one odd chunk of the shifted grid, every "real" one in an even chunk
        for side, parity in zip(sides[phase], (0, 1), strict=True):
            assert all(((s + phase) // 240) % 2 == parity and (s + phase) // 240 == (s + 23 + phase) // 240
                       for s in side)
    assert sides[0] != sides[120]


def test_grading_rules():
    assert grade(0.0, "discriminative") == "good"
    assert grade(0.1, "discriminative") == "fair"
    assert grade(0.3, "discriminative") == "poor"
    assert grade(None, "kl") == "n/a" and grade(float("nan"), "kl") == "n/a"
    assert all(good < fair for good, fair in VERDICT_RULES.values())
    with pytest.raises(ValueError, match="verdict"):
        MetricRecord("g", "n", 1.0, 1.0, 0.0, "closer", "great", "x")
