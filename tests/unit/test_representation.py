"""Representation: exact round trips, valid candles from any output, scale-freeness, windows and splits."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketsynth.data.bars import as_bars
from marketsynth.errors import ConfigError, DataError, ModelError
from marketsynth.representation import (
    OHLCV,
    REPRESENTATIONS,
    LogReturnRepresentation,
    MinMaxOHLCV,
    candles_frame,
    create_sequences,
    make_representation,
    representation_from_dict,
    windows_from_bars,
)

REAL_CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "BTCUSDT_1h.csv"
KINDS = [("log-returns", "standard"), ("log-returns", "minmax"), ("log-returns-level", "standard"),
         ("minmax-ohlcv", "minmax"), ("log-returns", "quantile-normal"), ("log-returns", "quantile-uniform")]
HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def real_bars() -> pd.DataFrame:
    if not REAL_CSV.exists():
        pytest.fail(f"shared fixture data missing: {REAL_CSV} (see ../shared/README.md)")
    return as_bars(pd.read_csv(REAL_CSV), source=str(REAL_CSV))


@functools.cache
def fitted(name: str, scaling: str):
    return make_representation(name, scaling=scaling).fit(real_bars())


def ohlcv(bars: pd.DataFrame) -> np.ndarray:
    return bars[list(OHLCV)].to_numpy()


def assert_valid(candles: np.ndarray) -> None:
    o, h, low, c, v = np.moveaxis(candles, -1, 0)
    assert np.isfinite(candles).all()
    assert (h >= np.maximum(o, c)).all() and (np.minimum(o, c) >= low).all()
    assert (low > 0).all() and (v >= 0).all()


def assert_round_trip(decoded: np.ndarray, bars: pd.DataFrame, scale_free: bool) -> None:
    """Equal to float precision: relative per value, or relative to each column's largest value for minmax."""
    expected = ohlcv(bars)
    if not scale_free:  # absolute errors of order eps * column range
        unit = np.where(expected.max(axis=0) > 0, expected.max(axis=0), 1.0)
        decoded, expected = decoded / unit, expected / unit
    np.testing.assert_allclose(decoded, expected, rtol=1e-9, atol=1e-12)


def make_bars(rows: np.ndarray, start: str = "2024-01-01", times=None) -> pd.DataFrame:
    times = pd.date_range(start, periods=len(rows), freq="1h", tz="UTC") if times is None else times
    frame = pd.DataFrame(rows, columns=list(OHLCV))
    frame.insert(0, "time", times)
    return as_bars(frame)


@st.composite
def valid_bars(draw, min_size=1, max_size=40):
    """Valid candles at any price level, with flat candles, zero wicks and zero volume."""
    n = draw(st.integers(min_size, max_size))
    level = draw(st.floats(-8, 12))
    wick = st.one_of(st.just(0.0), st.floats(0, 0.5))
    bar = st.tuples(
        st.floats(-1, 1),
        st.floats(-1, 1),
        st.booleans(),
        wick,
        wick,
        st.one_of(st.just(0.0), st.floats(0, 1e9)),
    )
    rows = []
    for a, b, flat, up, down, volume in draw(st.lists(bar, min_size=n, max_size=n)):
        o = np.exp(level + a)
        c = o if flat else np.exp(level + b)
        rows.append([o, max(o, c) * np.exp(up), min(o, c) * np.exp(-down), c, volume])
    return make_bars(np.array(rows))


# --- exact round trips


@pytest.mark.parametrize(("name", "scaling"), KINDS)
def test_real_series_round_trips_exactly(name, scaling):
    bars = real_bars()
    rep = fitted(name, scaling)
    decoded = rep.decode(rep.encode(bars), start_price=bars["open"].iloc[0])
    assert decoded.shape == (1, len(bars), 5)
    assert_round_trip(decoded[0], bars, scale_free=name.startswith("log-returns"))


@HYP
@given(st.data(), st.sampled_from(KINDS[:2]))
def test_real_slices_round_trip_from_their_previous_close(data, kind):
    bars = real_bars()
    start = data.draw(st.integers(0, len(bars) - 1))
    length = data.draw(st.integers(1, min(500, len(bars) - start)))
    part = bars.iloc[start : start + length]
    prev = None if start == 0 else bars["close"].iloc[start - 1]
    rep = fitted(*kind)
    decoded = rep.decode(rep.encode(part, prev_close=prev), part["open"].iloc[0] if prev is None else prev)
    np.testing.assert_allclose(decoded[0], ohlcv(part), rtol=1e-9, atol=1e-12)


@HYP
@given(valid_bars(), st.sampled_from(KINDS))
def test_random_valid_candles_round_trip(bars, kind):
    rep = make_representation(kind[0], scaling=kind[1]).fit(bars)
    if kind[1].startswith("quantile-"):
        # a rank scaling maps the values it was fitted on; the first bar (no previous close) is not among them
        # and may lie beyond the clamped tails, so the round trip starts after it
        if len(bars) < 2:
            return
        prev = bars["close"].iloc[0]
        bars = bars.iloc[1:]
        decoded = rep.decode(rep.encode(bars, prev_close=prev), start_price=prev)[0]
    else:
        decoded = rep.decode(rep.encode(bars), start_price=bars["open"].iloc[0])[0]
    assert_round_trip(decoded, bars, scale_free=kind[0].startswith("log-returns"))


# --- decoding arbitrary model output

reasonable = st.one_of(st.floats(-20, 20), st.sampled_from([0.0, 5e-324, -1e-300, 1e-12, 20.0, -20.0]))


@HYP
@given(st.data(), st.sampled_from(KINDS))
def test_any_reasonable_output_decodes_to_valid_candles(data, kind):
    n, length = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 32))
    rep = fitted(*kind)
    size = n * length * rep.n_features
    values = data.draw(st.lists(reasonable, min_size=size, max_size=size))
    start = data.draw(st.floats(1e-4, 1e7))
    candles = rep.decode(np.reshape(values, (n, length, rep.n_features)), start_price=start)
    assert candles.shape == (n, length, 5)
    assert_valid(candles)


@HYP
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=48, max_size=48),
    st.sampled_from(KINDS),
)
def test_any_finite_output_gives_valid_candles_or_a_model_error(values, kind):
    rep = fitted(*kind)
    try:
        candles = rep.decode(np.reshape(values[: 8 * rep.n_features], (8, rep.n_features)), start_price=100.0)
    except ModelError as exc:
        assert "float64" in str(exc)
    else:
        assert_valid(candles)


def test_overflowing_and_non_finite_output_raise_model_error():
    rep = fitted("log-returns", "standard")
    with pytest.raises(ModelError, match="beyond float64"):
        rep.decode(np.full((2, 4, 5), 1e6), start_price=100.0)
    for bad in (np.nan, np.inf):
        output = np.zeros((2, 4, 5))
        output[1, 2, 3] = bad
        with pytest.raises(ModelError, match="1 non-finite"):
            rep.decode(output, start_price=100.0)


def test_decode_shapes_anchors_and_frames():
    rep = fitted("log-returns", "standard")
    zeros = np.zeros((3, 4, 5))
    assert rep.decode(zeros[0]).shape == (1, 4, 5)  # [L, F] works; default anchor is the last training close
    assert rep.last_close == real_bars()["close"].iloc[-1]
    closes = rep.decode(zeros - rep.center / rep.scale, start_price=[1.0, 10.0, 100.0])[..., 3]
    np.testing.assert_allclose(closes, np.array([[1.0], [10.0], [100.0]]) * np.ones((1, 4)))  # ret 0: flat
    frame = rep.decode_frames(zeros, start_price=5.0)
    assert list(frame.columns) == ["sample_id", "timestep", *OHLCV]
    assert frame["sample_id"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert frame["timestep"].tolist() == [0, 1, 2, 3] * 3
    assert candles_frame(rep.decode(zeros, 5.0)).equals(frame)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(rep.decode(torch.zeros(3, 4, 5), 5.0), rep.decode(zeros, 5.0))
    for output, start in [(np.zeros((3, 4, 4)), 5.0), (np.zeros(5), 5.0), (zeros, [1.0, 2.0]), (zeros, -1.0)]:
        with pytest.raises(ModelError):
            rep.decode(output, start)
    unanchored = representation_from_dict({**rep.to_dict(), "last_close": None})
    with pytest.raises(ModelError, match="start_price"):
        unanchored.decode(zeros)
    with pytest.raises(ModelError, match="not fitted"):
        LogReturnRepresentation().decode(zeros, 5.0)


def test_level_representation_starts_windows_at_the_generated_level():
    bars = real_bars().iloc[:200].reset_index(drop=True)
    rep = make_representation("log-returns-level").fit(bars)
    features = rep.encode(bars)
    assert rep.feature_names[-1] == "level"
    np.testing.assert_allclose(rep.inverse_transform(features)[1:, -1], np.log(bars["close"].to_numpy()[:-1]))
    windows = np.stack([features[10:34], features[100:124]])
    decoded = rep.decode(windows)  # no start price: each window starts at its own level
    np.testing.assert_allclose(decoded[:, :, 3], [bars["close"][10:34], bars["close"][100:124]], rtol=1e-9)
    shifted = rep.decode(windows, start_price=1.0)  # an explicit start price overrides the level
    np.testing.assert_allclose(shifted[0, :, 3] / shifted[0, 0, 3], decoded[0, :, 3] / decoded[0, 0, 3], rtol=1e-9)


def test_minmax_ohlcv_repairs_inconsistent_output():
    rep = fitted("minmax-ohlcv", "minmax")
    rng = np.random.default_rng(0)
    candles = rep.decode(rng.normal(scale=3.0, size=(50, 16, 5)))
    assert_valid(candles)
    assert candles[..., :4].min() >= real_bars()["low"].min() * (1 - 1e-12)  # floored at the training min


# --- scale-freeness and scaling


@HYP
@given(valid_bars())
def test_multiplying_prices_by_1000_changes_no_feature(bars):
    rep = fitted("log-returns", "standard")
    richer = bars.assign(**{c: bars[c] * 1000 for c in ["open", "high", "low", "close"]})
    np.testing.assert_allclose(rep.encode(richer), rep.encode(bars), rtol=0, atol=1e-9)
    decoded = rep.decode(rep.encode(bars), bars["open"].iloc[0] * 1000)[0]
    np.testing.assert_allclose(decoded, ohlcv(richer), rtol=1e-9, atol=1e-12)


def test_scaling_parameters_do_not_depend_on_price_level():
    bars = real_bars()
    richer = bars.assign(**{c: bars[c] * 1000 for c in ["open", "high", "low", "close"]})
    for scaling in ("standard", "minmax"):
        a, b = fitted("log-returns", scaling), LogReturnRepresentation(scaling).fit(richer)
        np.testing.assert_allclose(b.center, a.center, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(b.scale, a.scale, rtol=1e-6)


def test_minmax_puts_training_features_in_unit_interval_and_standard_z_scores():
    bars = real_bars()
    for name in REPRESENTATIONS:
        rep = fitted(name, "minmax")
        features = rep.encode(bars)[1:] if rep.relative_to_previous_close else rep.encode(bars)  # the fitted rows
        assert features.min() >= -1 - 1e-12 and features.max() <= 1 + 1e-12
        np.testing.assert_allclose(features.min(axis=0), -1, atol=1e-12)
        np.testing.assert_allclose(features.max(axis=0), 1, atol=1e-12)
    features = fitted("log-returns", "standard").encode(bars)[1:]  # the first bar has no previous close
    np.testing.assert_allclose(features.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(features.std(axis=0), 1, atol=1e-9)


def test_fit_skips_bars_after_a_time_gap():
    """A 10-day hole's price move must not count as one bar's gap/return in the scaling."""
    bars = real_bars().iloc[:300].reset_index(drop=True)
    later = bars.iloc[200:].copy()
    later[["open", "high", "low", "close"]] *= 1.5  # the market moved 50% while no bars were recorded
    holed = pd.concat([bars.iloc[:100], later]).reset_index(drop=True)
    together = LogReturnRepresentation().fit(holed)
    apart = LogReturnRepresentation().fit([bars.iloc[:100], later])
    np.testing.assert_allclose(together.center, apart.center, rtol=1e-12)
    np.testing.assert_allclose(together.scale, apart.scale, rtol=1e-12)
    naive = LogReturnRepresentation()._encode_raw(holed, None)[1:].std(axis=0)  # with the bar across the hole
    assert naive[0] > 2 * together.scale[0]


def test_fit_on_a_list_of_frames_and_constant_features():
    bars = real_bars()
    rep = LogReturnRepresentation("minmax").fit([bars.iloc[:100], bars.iloc[200:300]])
    assert rep.last_close == bars["close"].iloc[299]
    flat = make_bars(np.tile([5.0, 5.0, 5.0, 5.0, 0.0], (10, 1)))
    encoded = LogReturnRepresentation().fit(flat).encode(flat)
    assert np.isfinite(encoded).all() and (encoded == 0).all()
    with pytest.raises(DataError):
        LogReturnRepresentation().fit([])


# --- serialisation


@pytest.mark.parametrize(("name", "scaling"), KINDS)
def test_to_dict_round_trips_through_json(name, scaling):
    rep = fitted(name, scaling)
    back = representation_from_dict(json.loads(json.dumps(rep.to_dict())))
    assert type(back) is type(rep) and back.scaling == scaling and back.last_close == rep.last_close
    bars = real_bars().iloc[:300]
    assert np.array_equal(back.encode(bars), rep.encode(bars))
    assert back.feature_names == rep.feature_names and back.n_features == len(rep.feature_names) >= 5
    unfitted = representation_from_dict(json.loads(json.dumps(make_representation(name).to_dict())))
    assert not unfitted.fitted and type(unfitted) is type(rep)


def test_from_dict_rejects_foreign_or_broken_dicts():
    good = fitted("log-returns", "standard").to_dict()
    broken = [
        "log-returns",
        {},
        {**good, "format": "something-else"},
        {**good, "version": 99},
        {**good, "name": "gaussian-copula"},
        {**good, "feature_names": ["open", "high", "low", "close", "volume"]},
        {**good, "scaling": "robust"},
        {**good, "center": [0.0, 1.0]},
        {**good, "scale": [1.0, 1.0, -1.0, 1.0, 1.0]},
        {**good, "last_close": -3},
        {k: v for k, v in good.items() if k != "scale"},
    ]
    for data in broken:
        with pytest.raises(ModelError):
            representation_from_dict(data)


def test_make_representation_checks_names_and_options():
    assert isinstance(make_representation("minmax-ohlcv"), MinMaxOHLCV)
    assert make_representation("log-returns", scaling="minmax").scaling == "minmax"
    with pytest.raises(ConfigError, match="did you mean log-returns"):
        make_representation("log-return")
    with pytest.raises(ConfigError):
        make_representation("log-returns", scaling="robust")
    with pytest.raises(ConfigError):
        make_representation("minmax-ohlcv", scaling="standard")


# --- invalid input


def test_encoding_invalid_candles_names_count_and_first_time():
    rows = np.tile([10.0, 12.0, 9.0, 11.0, 1.0], (6, 1))
    rows[2, 1] = 10.5  # high below close
    rows[4, 2] = 0.0  # low not positive
    bars = make_bars(rows)
    with pytest.raises(DataError, match=r"2 of 6 bars .* first at time 2024-01-01 02:00:00\+00:00"):
        LogReturnRepresentation().fit(bars)
    for column, value in [(0, np.nan), (4, -1.0), (2, 10.5), (3, -11.0), (1, np.inf)]:
        bad = rows[:2].copy()
        bad[1, column] = value
        with pytest.raises(DataError, match="1 of 2 bars"):
            LogReturnRepresentation().fit(make_bars(bad))
    rep = fitted("log-returns", "standard")
    with pytest.raises(DataError, match="volume"):
        rep.encode(make_bars(rows[:1]).drop(columns="volume"))
    with pytest.raises(DataError, match="no bars"):
        rep.encode(make_bars(rows[:0]))
    for prev in (0.0, np.nan, -5.0):
        with pytest.raises(DataError, match="prev_close"):
            rep.encode(make_bars(rows[:1]), prev_close=prev)


# --- windows and splits


@HYP
@given(st.integers(1, 60), st.integers(1, 4), st.data())
def test_create_sequences_shapes_and_strides(length, n_features, data):
    seq_len, stride = data.draw(st.integers(1, length)), data.draw(st.integers(1, 5))
    features = np.arange(length * n_features, dtype=float).reshape(length, n_features)
    windows = create_sequences(features, seq_len, stride)
    assert windows.shape == ((length - seq_len) // stride + 1, seq_len, n_features)
    assert windows.flags.c_contiguous and windows.flags.writeable
    for i, window in enumerate(windows):
        assert np.array_equal(window, features[i * stride : i * stride + seq_len])


def test_create_sequences_rejects_bad_arguments():
    with pytest.raises(DataError, match="needs at least 5 bars, got 4"):
        create_sequences(np.zeros((4, 5)), 5)
    with pytest.raises(ConfigError):
        create_sequences(np.zeros((4, 5)), 0)
    with pytest.raises(ConfigError):
        create_sequences(np.zeros((4, 5)), 2, stride=0)
    with pytest.raises(DataError, match="2-D"):
        create_sequences(np.zeros(4), 2)


@HYP
@given(st.integers(2, 120), st.integers(1, 8), st.integers(1, 3), st.data())
def test_windows_never_span_a_time_gap(n_bars, seq_len, stride, data):
    bars = real_bars().iloc[:n_bars].reset_index(drop=True)
    dropped = data.draw(st.sets(st.integers(0, n_bars - 1), max_size=n_bars // 4))
    bars = bars.drop(index=sorted(dropped)).reset_index(drop=True)
    rep = fitted("log-returns", "standard")
    times = bars["time"]
    runs = np.diff(np.flatnonzero(np.r_[True, np.diff(times) != pd.Timedelta("1h"), True]))
    expected = sum(max(0, r - seq_len) for r in runs)  # stride 1: a run of r bars gives r - seq_len windows
    if expected == 0:
        with pytest.raises(DataError, match=f"needs {seq_len + 1} consecutive bars"):
            windows_from_bars(bars, rep, seq_len, stride, timeframe="1h")
        return
    windows = windows_from_bars(bars, rep, seq_len, stride, timeframe="1h")
    assert len(windows.features) == len(range(0, expected, stride))
    assert windows.features.shape[1:] == (seq_len, 5)
    for start in windows.start_index:
        span = times.iloc[start - 1 : start + seq_len]  # the anchor bar and the window's bars
        assert (np.diff(span) == pd.Timedelta("1h")).all()
    decoded = rep.decode(windows.features, windows.anchors)
    rows = windows.start_index[:, None] + np.arange(seq_len)
    np.testing.assert_allclose(decoded, ohlcv(bars)[rows], rtol=1e-9, atol=1e-12)


def test_windows_infer_the_bar_length_and_check_order():
    bars = real_bars().iloc[:50].drop(index=[20]).reset_index(drop=True)
    rep = fitted("log-returns", "standard")
    inferred = windows_from_bars(bars, rep, 5)
    explicit = windows_from_bars(bars, rep, 5, timeframe="60")
    assert np.array_equal(inferred.start_index, explicit.start_index)
    assert len(inferred.features) == (20 - 5) + (29 - 5)
    with pytest.raises(DataError, match="sorted"):
        windows_from_bars(bars.iloc[::-1], rep, 5)
    with pytest.raises(DataError, match="needs 50 consecutive bars.*longest gap-free run has 29"):
        windows_from_bars(bars, rep, 49)


# --- rank scaling with atoms (quantile-normal / quantile-uniform)


@pytest.mark.parametrize("scaling", ["quantile-normal", "quantile-uniform"])
def test_quantile_scaling_restores_atoms_exactly_on_real_bars(scaling):
    bars = real_bars()
    rep = fitted("log-returns", scaling)
    o, c = bars["open"].to_numpy(), bars["close"].to_numpy()
    real_atoms = o[1:] == c[:-1]
    assert real_atoms.mean() > 0.2  # the fixture has the atom this scaling exists for
    assert 0.0 in rep.quantiles.atoms[rep.feature_names.index("gap")]
    decoded = rep.decode(rep.encode(bars), start_price=bars["open"].iloc[0])[0]
    np.testing.assert_array_equal(decoded[1:, 0] == decoded[:-1, 3], real_atoms)
    np.testing.assert_array_equal(decoded[:, 1] == np.maximum(decoded[:, 0], decoded[:, 3]),
                                  bars["high"].to_numpy() == np.maximum(o, c))


def test_quantile_normal_features_are_standard_normal_with_atoms_spread_over_their_interval():
    rep = fitted("log-returns", "quantile-normal")
    encoded = rep.encode(real_bars())[1:]
    np.testing.assert_allclose(encoded.mean(axis=0), 0.0, atol=0.02)
    np.testing.assert_allclose(encoded.std(axis=0), 1.0, atol=0.02)
    gap = encoded[:, rep.feature_names.index("gap")]
    assert len(np.unique(gap)) > 0.99 * len(gap)  # no spike a discriminator could see
    assert np.array_equal(rep.encode(real_bars()), rep.encode(real_bars()))  # the spreading is seeded


def test_quantile_decoding_any_score_in_an_atom_interval_gives_the_atom():
    rep = fitted("log-returns", "quantile-normal")
    j = rep.feature_names.index("gap")
    quantiles = rep.quantiles
    at = np.flatnonzero(quantiles.x[j] == 0.0)
    inside = np.linspace(quantiles.s[j][at[0]], quantiles.s[j][at[-1]], 101)
    assert (rep.unscaled_feature(inside, "gap") == 0.0).all()
    outside = np.array([quantiles.s[j][at[0]] - 0.05, quantiles.s[j][at[-1]] + 0.05])
    assert (rep.unscaled_feature(outside, "gap") != 0.0).all()
    huge = rep.decode(np.full((2, 4, 5), 1e300), start_price=100.0)  # clamped tails: any finite output decodes
    assert_valid(huge)


def test_quantile_scaling_keeps_older_saved_representations_loading():
    old = fitted("log-returns", "standard").to_dict()
    assert old["version"] == 1 and "quantile" not in old  # unchanged for the affine scalings
    saved = fitted("log-returns", "quantile-normal").to_dict()
    assert saved["version"] == 2
    broken = json.loads(json.dumps(saved))
    broken["quantile"]["s"][0] = broken["quantile"]["s"][0][::-1]
    with pytest.raises(ModelError, match="malformed"):
        representation_from_dict(broken)


@pytest.mark.parametrize(("name", "scaling"), [k for k in KINDS if k[0].startswith("log-returns")])
def test_unscaled_feature_is_that_column_of_inverse_transform(name, scaling):
    rep = fitted(name, scaling)
    scaled = np.random.default_rng(0).standard_normal((3, 7, rep.n_features))
    np.testing.assert_array_equal(rep.unscaled_feature(scaled[..., 1], "ret"), rep.inverse_transform(scaled)[..., 1])
