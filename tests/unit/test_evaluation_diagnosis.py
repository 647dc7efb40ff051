"""``diagnose``: which property gives synthetic windows away, found and ranked; its JSON and its report section."""

from __future__ import annotations

import dataclasses
import functools
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from marketsynth.errors import ConfigError, DataError  # noqa: E402
from marketsynth.evaluation import PROTOCOLS, evaluate  # noqa: E402
from marketsynth.evaluation.diagnosis import daily_phases, diagnose  # noqa: E402
from marketsynth.evaluation.report import write_report  # noqa: E402
from marketsynth.evaluation.report_diagnosis import TITLE  # noqa: E402
from marketsynth.progress import Recorder  # noqa: E402

L = 12
# enough training for the GRUs to see an obvious difference in a few hundred windows, in about a second each
QUICK = dataclasses.replace(PROTOCOLS["default"], discriminative_iterations=150, predictive_iterations=20,
                            batch_size=128, patience=None)
TINY = dataclasses.replace(QUICK, discriminative_iterations=5)  # for tests that do not look at the scores


def candles(ret, upper, lower, log_volume, gap=None, start=100.0) -> np.ndarray:
    """Valid candle windows ``[n, L, 5]`` from per-bar log features (gap: open vs the previous close)."""
    gap = np.zeros_like(ret) if gap is None else gap
    close = start * np.exp(np.cumsum(gap + ret, axis=1))
    previous = np.concatenate([np.full((len(ret), 1), start), close[:, :-1]], axis=1)
    open_ = previous * np.exp(gap)
    high = np.maximum(open_, close) * np.exp(upper)
    low = np.minimum(open_, close) * np.exp(-lower)
    return np.stack([open_, high, low, close, np.exp(log_volume)], axis=-1)


def bar_features(n: int, seed: int, *, trend: bool = False, wick_scale: float = 1.0, hour=None):
    """ret, upper, lower, log volume ``[n, L]``: ``trend`` makes volume and volatility rise over each window (a
    temporal pattern), ``hour`` ([n, L] positions in a 24-bar day) adds a daily volume cycle."""
    rng = np.random.default_rng(seed)
    rise = np.linspace(-1.0, 1.0, L) if trend else np.zeros(L)
    ret = rng.normal(0, 0.01, (n, L)) * np.exp(0.5 * rise)
    upper, lower = (wick_scale * np.abs(rng.normal(0, 0.004, (n, L))) for _ in range(2))
    log_volume = 5 + 1.5 * rise + rng.normal(0, 0.3, (n, L))
    if hour is not None:
        log_volume = log_volume + np.sin(2 * np.pi * hour / 24)
    return ret, upper, lower, log_volume


def shuffled_in_time(features, seed: int):
    order = np.argsort(np.random.default_rng(seed).random(features[0].shape), axis=1)
    return tuple(np.take_along_axis(f, order, axis=1) for f in features)


def run(real, synthetic, protocol=QUICK, **kwargs):
    return diagnose(real, synthetic, seq_len=L, protocol=protocol, **kwargs)


@functools.cache
def wick_diagnosis():
    return run(candles(*bar_features(400, 0)), candles(*bar_features(400, 1, wick_scale=2.0)))


def test_continuous_gaps_show_no_atoms_and_rank_first():
    rng = np.random.default_rng(0)
    gaps = rng.normal(0, 2e-4, (300, L))
    real_gaps = np.where(rng.random((300, L)) < 0.4, 0.0, gaps)  # 40 % of bars open at the previous close
    real = candles(*bar_features(300, 0), gap=real_gaps)
    synthetic = candles(*bar_features(300, 1), gap=gaps)
    result = run(real, synthetic, protocol=TINY)
    assert result.atoms["gap"]["real"] == pytest.approx(0.4, abs=0.03)
    assert result.atoms["gap"]["synthetic"] == 0.0
    top = result.findings[0]
    assert top.topic == "atoms" and "open = previous close" in top.text and top.verdict == "poor"
    assert result.summary_lines()[0].startswith("1. [poor] atoms: open = previous close in 4")


def test_time_shuffled_real_windows_are_told_apart_in_order_but_not_shuffled():
    real = candles(*bar_features(400, 0, trend=True))
    shuffled = candles(*shuffled_in_time(bar_features(400, 1, trend=True), seed=2))
    result = run(real, shuffled)
    ordered, after_shuffle = result.time_order["in order"]["mean"], result.time_order["shuffled"]["mean"]
    assert ordered > 0.3
    assert after_shuffle < 0.15
    finding = next(f for f in result.findings if f.topic == "time order")
    assert "how bars follow each other" in finding.text and finding.verdict == "poor"
    # the ACFs see the same thing: volume rises over real windows, not over shuffled ones
    assert result.acf["volume"]["real"][0] > result.acf["volume"]["synthetic"][0] + 0.3


def test_doubled_wicks_are_found_by_the_wick_discriminators_and_ranked_above_returns():
    result = wick_diagnosis()
    scores = {name: r["mean"] for name, r in result.discriminators.items()}
    assert min(scores["upper"], scores["lower"]) > 0.2
    assert max(scores["ret"], scores["volume"]) < 0.12
    assert result.marginals["upper"]["std"]["difference"] == pytest.approx(1.0, abs=0.2)
    ranked = [f.text for f in result.findings]
    first_wick = next(i for i, text in enumerate(ranked) if "wick" in text)
    first_return = next(i for i, text in enumerate(ranked) if "returns" in text)
    assert first_wick == 0 and first_wick < first_return


def test_phases_give_a_daily_profile_and_a_missing_clock_is_said():
    phase = np.random.default_rng(3).integers(0, 24, 300)
    hour = (phase[:, None] + np.arange(L)) % 24
    real = candles(*bar_features(300, 0, hour=hour))
    same_cycle = candles(*bar_features(300, 1, hour=hour))
    no_cycle = candles(*bar_features(300, 2))
    kwargs = {"protocol": TINY, "real_phase": phase, "bars_per_day": 24}
    good = run(real, same_cycle, synthetic_phase=phase, **kwargs)
    assert good.daily["correlation"]["volume"] > 0.9
    assert np.nanmax(good.daily["real"]["volume"]) - np.nanmin(good.daily["real"]["volume"]) > 1.5
    flat = run(real, no_cycle, synthetic_phase=phase, **kwargs)
    finding = next(f for f in flat.findings if f.topic == "daily cycle" and "of volume" in f.text)
    assert flat.daily["correlation"]["volume"] < 0.5 and finding.verdict == "poor"
    unknown = run(real, no_cycle, **kwargs)
    assert unknown.daily["synthetic"] is None and unknown.daily["real"] is not None
    assert "carry no clock" in unknown.daily["note"]
    assert not any(f.topic == "daily cycle" for f in unknown.findings)
    with pytest.raises(ConfigError, match="bars_per_day"):
        run(real, no_cycle, protocol=TINY, real_phase=phase)
    with pytest.raises(DataError, match="real_phase"):
        run(real, no_cycle, protocol=TINY, real_phase=phase[:10], bars_per_day=24)


def test_daily_phases_follow_the_window_cutter():
    times = pd.date_range("2024-01-01 05:00", periods=60, freq="h", tz="UTC")
    values = np.full((60, 5), 100.0)
    bars = pd.DataFrame(values, columns=["open", "high", "low", "close", "volume"]).assign(time=times)
    phases, per_day = daily_phases(bars, L, "1h")
    assert per_day == 24
    assert phases[0] == 6  # the first bar only anchors the first window
    assert len(phases) == 60 - L and (np.diff(phases) % 24 == 1).all()
    by_frame = run(bars, candles(*bar_features(50, 0)), protocol=TINY)  # a bars frame brings its own clock
    assert by_frame.daily["bars_per_day"] == 24 and by_frame.daily["real"] is not None


def test_to_dict_is_plain_json_and_summary_lines_are_ranked():
    result = wick_diagnosis()
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert {"discriminators", "time_order", "atoms", "marginals", "volume_level", "correlations", "acf", "daily",
            "findings", "notes"} <= set(data)
    assert len(data["acf"]["lags"]) == L - 2  # bars 2..L
    assert data["findings"][0]["verdict"] == "poor"
    severities = [f["severity"] for f in data["findings"]]
    assert severities == sorted(severities, reverse=True)
    assert len(result.summary_lines(3)) == 3


def test_evaluate_keeps_the_diagnosis_and_the_report_shows_it(tmp_path):
    real, synthetic = candles(*bar_features(120, 0)), candles(*bar_features(120, 1, wick_scale=2.0))
    recorder = Recorder()
    result = evaluate(real, synthetic, seq_len=L, repeats=1, protocol=TINY, max_windows=120, progress=recorder,
                      diagnose={"bars_per_day": 24, "real_phase": np.zeros(120, dtype=int)})
    assert result.diagnosis is not None and result.diagnosis.protocol == "default"
    assert "diagnose" in recorder.stages()
    assert "diagnosis" in json.loads(result.to_json())
    assert "diagnosis" not in json.loads(evaluate(real, synthetic, seq_len=L, repeats=1, protocol=TINY).to_json())
    path = write_report(tmp_path / "report.html", title="diagnosis", result=result)
    page = path.read_text(encoding="utf-8")
    assert TITLE in page and page.index("Metrics") < page.index(TITLE)
    for heading in ("Ranked findings", "Discriminators, one feature at a time", "upper wicks alone",
                    "all features, bars shuffled in time", "Exact atoms", "open = previous close", "Marginals",
                    "Correlations within bars", "shown for the real windows only"):
        assert heading in page
    assert (tmp_path / "report_files" / "diagnosis.png").is_file()


def test_generated_samples_carry_their_clock_into_the_diagnosis(btc_csv):
    """A model that reads the time of day writes ``bar_of_day``; ``diagnose`` compares its daily cycle from it."""
    from marketsynth.data.bars import as_bars
    from marketsynth.generation import generate_frame
    from marketsynth.models.autoregressive import AutoregressiveModel
    from marketsynth.models.data import TrainingData
    from marketsynth.representation import make_representation
    from marketsynth.training import fit_model

    bars = as_bars(pd.read_csv(btc_csv, skiprows=range(1, 3000), nrows=600))
    rep = make_representation("log-returns").fit(bars)
    data = TrainingData(bars, representation=rep)
    config = AutoregressiveModel.configure({"hidden_size": 8, "num_layers": 1, "mixtures": 2, "head_size": 8,
                                            "train_len": 24, "batch_size": 32, "seq_len": L}, data)
    model = AutoregressiveModel(config, seed=0)
    fit_model(model, model.training_arrays(data), epochs=1)
    frame = generate_frame(model, rep, 40, seed=3)
    first = frame.groupby("sample_id")["bar_of_day"].first().to_numpy()
    np.testing.assert_array_equal(frame["bar_of_day"], (first[frame["sample_id"]] + frame["timestep"]) % 24)
    assert len(set(first)) > 10  # start positions drawn over the day
    found = diagnose(bars, frame, seq_len=L, protocol=TINY)
    assert found.daily["synthetic"] is not None and found.daily["bars_per_day"] == 24
