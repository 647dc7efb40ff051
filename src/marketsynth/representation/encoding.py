"""Candles <-> model features: the one module that knows how OHLCV is encoded for models.

``LogReturnRepresentation`` (the default) turns each bar into five scale-free numbers relative to the previous
close ``Cp``, so one model serves BTC at 60 000 and a token at 0.0001::

    gap = log(O/Cp)   ret = log(C/Cp)   upper = log(H/max(O,C))   lower = log(min(O,C)/L)   volume = log1p(V)

followed by a per-feature scaling fitted on training data: affine (``standard`` z-scores for recurrent models,
``minmax`` to [-1, 1] for tanh generators) or through each feature's empirical CDF (``quantile-normal`` /
``quantile-uniform``, ``representation.quantile``: fat tails tamed and exact atoms such as open == previous
close expressible by a continuous generator). Decoding rebuilds prices from an anchor (the close before the
window) so that *any* finite model output gives valid candles by construction: wicks and volume pass through
max(x, 0), which is the identity on real data, so encode -> decode is exact. ``MinMaxOHLCV`` is the seed's
legacy encoding (raw columns min-max scaled); it is not scale-free and has to repair its outputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from marketsynth.data.bars import time_breaks, valid_candles
from marketsynth.errors import ConfigError, DataError, ModelError, did_you_mean
from marketsynth.representation.quantile import QuantileMap
from marketsynth.scaling import AffineScaler

OHLCV = ("open", "high", "low", "close", "volume")
_ZERO_TOLERANCE = 1e-9  # log units: far below any market's price tick (>= ~1e-6), far above float rounding
QUANTILE_SCALINGS = {"quantile-normal": "normal", "quantile-uniform": "uniform"}  # scaling -> QuantileMap target
SCALINGS = ("standard", "minmax", *QUANTILE_SCALINGS)
_FORMAT = "marketsynth.representation"
_VERSION = 2  # 2: adds the quantile scalings (their knots under "quantile"); version 1 dicts still load
_READABLE_VERSIONS = (1, 2)


class Representation(ABC):
    """Shared interface: fit the scaling, encode bars, decode model output to OHLCV candles ``[n, L, 5]``."""

    name: ClassVar[str]
    feature_names: ClassVar[tuple[str, ...]]
    relative_to_previous_close: ClassVar[bool] = True  # features of a bar depend on the close before it

    def __init__(self, scaling: str = "standard"):
        if scaling not in SCALINGS:
            raise ConfigError(f"unknown scaling '{scaling}'; use one of {', '.join(SCALINGS)}")
        self.scaling = scaling
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.last_close: float | None = None  # last real close seen in fit: the default anchor for generation
        self.quantiles: QuantileMap | None = None  # the fitted CDF maps of the quantile scalings

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def fitted(self) -> bool:
        return self.center is not None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scaling={self.scaling!r}, fitted={self.fitted})"

    def fit(self, bars: pd.DataFrame | Sequence[pd.DataFrame]) -> Representation:
        """Fit the scaling on a bars frame or a list of them (in time order; the last close is remembered)."""
        frames = [bars] if isinstance(bars, pd.DataFrame) else list(bars)
        if not frames or not all(isinstance(f, pd.DataFrame) for f in frames):
            raise DataError("fit needs a bars frame or a non-empty list of bars frames")
        # A bar after a time gap (or a frame's first bar) has no real previous close: features relative to it would
        # span the gap (a 10-day hole's price move as one bar's "gap"), so it is left out unless nothing is left
        encoded = [(self._encode_raw(frame, None), follows_previous_bar(frame) if self.relative_to_previous_close
                    else np.ones(len(frame), dtype=bool)) for frame in frames]
        if any(keep.any() for _, keep in encoded):
            raw = np.concatenate([features[keep] for features, keep in encoded])
        else:
            raw = np.concatenate([features for features, _ in encoded])
        scaler = AffineScaler.symmetric(raw) if self.scaling == "minmax" else AffineScaler.standard(raw)
        self.center, self.scale = scaler.center, scaler.scale  # a constant feature maps to 0, no division by 0
        if self.scaling in QUANTILE_SCALINGS:  # center/scale stay the features' moments, for reference
            self.quantiles = QuantileMap.fit(raw, QUANTILE_SCALINGS[self.scaling])
        self.last_close = float(frames[-1]["close"].iloc[-1])
        return self

    def encode(self, bars: pd.DataFrame, prev_close: float | None = None) -> np.ndarray:
        """Scaled features ``[T, n_features]`` for T bars; ``prev_close``: the close before the first bar."""
        return self.transform(self._encode_raw(bars, prev_close))

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Unscaled -> scaled features."""
        self._require_fitted()
        if self.quantiles is not None:
            return self.quantiles.transform(features)
        return AffineScaler(self.center, self.scale)(features)

    def inverse_transform(self, scaled: np.ndarray) -> np.ndarray:
        """Scaled -> unscaled features."""
        self._require_fitted()
        if self.quantiles is not None:
            return self.quantiles.inverse(scaled)
        return AffineScaler(self.center, self.scale).inverse(scaled)

    def unscaled_feature(self, scaled, name: str) -> np.ndarray:
        """One feature's unscaled values from its scaled values (any shape), e.g. the ``ret`` log returns."""
        self._require_fitted()
        j = self.feature_names.index(name)
        if self.quantiles is not None:
            return self.quantiles.feature_inverse(scaled, j)
        return np.asarray(scaled, dtype=np.float64) * self.scale[j] + self.center[j]

    def decode(self, model_output, start_price: float | np.ndarray | None = None) -> np.ndarray:
        """Candles ``[n, L, 5]`` (open, high, low, close, volume) from model output ``[n, L, F]``/``[L, F]``.

        ``start_price`` is the close before each window (a float or one per sample); it defaults to the last
        close seen in ``fit``. Raises ModelError for non-finite output or prices beyond float64's range.
        """
        scaled = _model_array(model_output, self.n_features)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            candles = self._decode_raw(self.inverse_transform(scaled), start_price)
            broken = ~(np.isfinite(candles).all(axis=(1, 2)) & (candles[..., 2] > 0).all(axis=1))
        if broken.any():
            raise ModelError(
                f"{int(broken.sum())} of {len(candles)} sample(s) decode to prices or volumes beyond "
                "float64's range (model output far outside the training range); check the model and scaling"
            )
        return candles

    def decode_frames(self, model_output, start_price: float | np.ndarray | None = None) -> pd.DataFrame:
        """``decode`` as a long frame: ``sample_id, timestep, open, high, low, close, volume``."""
        return candles_frame(self.decode(model_output, start_price))

    def to_dict(self) -> dict:
        """JSON-serialisable state; ``representation_from_dict`` rebuilds it."""
        return {
            "format": _FORMAT,
            "version": _VERSION if self.quantiles is not None else 1,  # older readers still load the others
            "name": self.name,
            "scaling": self.scaling,
            "feature_names": list(self.feature_names),
            "center": None if self.center is None else [float(x) for x in self.center],
            "scale": None if self.scale is None else [float(x) for x in self.scale],
            "last_close": self.last_close,
            **({"quantile": self.quantiles.to_dict()} if self.quantiles is not None else {}),
        }

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ModelError(f"the {self.name} representation is not fitted; call fit(bars) first")

    def _encode_raw(self, bars: pd.DataFrame, prev_close: float | None) -> np.ndarray:
        return self._features(valid_ohlcv(bars), prev_close)

    @abstractmethod
    def _features(self, ohlcv: np.ndarray, prev_close: float | None) -> np.ndarray:
        """Unscaled features ``[T, F]`` of valid OHLCV rows."""

    @abstractmethod
    def _decode_raw(self, features: np.ndarray, start_price) -> np.ndarray:
        """Candles ``[n, L, 5]`` from unscaled features."""


class LogReturnRepresentation(Representation):
    """Scale-free log-return features; exactly invertible, any finite output decodes to valid candles."""

    name = "log-returns"
    feature_names = ("gap", "ret", "upper", "lower", "volume")

    def _features(self, ohlcv: np.ndarray, prev_close: float | None) -> np.ndarray:
        o, h, low, c, v = ohlcv.T
        prev = _previous_closes(ohlcv, prev_close)
        return np.column_stack(
            [
                np.log(o / prev),
                np.log(c / prev),
                np.log(h / np.maximum(o, c)),
                np.log(np.minimum(o, c) / low),
                np.log1p(v),
            ]
        )

    def _decode_raw(self, features: np.ndarray, start_price) -> np.ndarray:
        if start_price is None:
            start_price = self.last_close
        if start_price is None:
            raise ModelError("no start price to decode from: pass start_price or fit the representation")
        start = _positive(start_price, "start_price", ModelError)
        start = np.broadcast_to(start, (len(features),)) if start.ndim == 0 else start
        if start.shape != (len(features),):
            raise ModelError(f"start_price has {start.size} values for {len(features)} samples; pass 1 or n")
        gap, ret, upper, lower, volume = np.moveaxis(_exact_zeros(features, (0, 2, 3)), -1, 0)
        log_start = np.log(start)[:, None]
        log_close = log_start + np.cumsum(ret, axis=1)
        log_prev = np.concatenate([log_start, log_close[:, :-1]], axis=1)
        o, c = np.exp(log_prev + gap), np.exp(log_close)
        # exp(x >= 0) >= 1 and exp(-x) <= 1, so high >= max(o, c) and low <= min(o, c) hold in floating point
        h = np.maximum(o, c) * np.exp(np.maximum(upper, 0.0))
        low = np.minimum(o, c) * np.exp(-np.maximum(lower, 0.0))
        return np.stack([o, h, low, c, np.expm1(np.maximum(volume, 0.0))], axis=-1)


class LogReturnLevelRepresentation(LogReturnRepresentation):
    """The log-return features plus ``level`` = log(previous close), so a model also learns the price level and
    how the other features go with it (volume often falls as a stock's price rises). Not scale-free: meant for
    comparisons on absolute, min-max scaled prices (the TimeGAN paper's protocol). Decoding starts each window at
    the level the model generated for it (``exp(level)`` of its first bar) unless ``start_price`` is given; the
    later bars' levels are not used (the returns carry the path)."""

    name = "log-returns-level"
    feature_names = (*LogReturnRepresentation.feature_names, "level")

    def _features(self, ohlcv: np.ndarray, prev_close: float | None) -> np.ndarray:
        level = np.log(_previous_closes(ohlcv, prev_close))
        return np.column_stack([super()._features(ohlcv, prev_close), level])

    def _decode_raw(self, features: np.ndarray, start_price) -> np.ndarray:
        if start_price is None:
            start_price = np.exp(features[:, 0, -1])
        return super()._decode_raw(features[..., :-1], start_price)


class MinMaxOHLCV(Representation):
    """The seed's legacy encoding: raw OHLCV columns min-max scaled to [-1, 1]. Not scale-free.

    Raw outputs can be inconsistent, so decoding *repairs* them: prices below the training minimum are raised
    to it (prices cannot go negative), high = max(o, h, l, c), low = min(o, h, l, c), volume = max(v, 0).
    Valid data within the training range comes back exactly. ``start_price``/``prev_close`` are ignored.
    """

    name = "minmax-ohlcv"
    feature_names = OHLCV

    relative_to_previous_close = False

    def __init__(self, scaling: str = "minmax"):
        if scaling != "minmax":
            raise ConfigError(f"representation minmax-ohlcv only supports scaling 'minmax', not '{scaling}'")
        super().__init__(scaling)

    def _features(self, ohlcv: np.ndarray, prev_close: float | None) -> np.ndarray:
        return ohlcv.copy()

    def _decode_raw(self, features: np.ndarray, start_price) -> np.ndarray:
        lowest = (self.center - self.scale)[:4]  # each column's training min, unless the column was constant
        prices = np.maximum(features[..., :4], np.where(lowest > 0, lowest, self.center[:4]))
        o, c = prices[..., 0], prices[..., 3]
        h, low = prices.max(axis=-1), prices.min(axis=-1)
        return np.stack([o, h, low, c, np.maximum(features[..., 4], 0.0)], axis=-1)


REPRESENTATIONS: dict[str, type[Representation]] = {
    "log-returns": LogReturnRepresentation,
    "log-returns-level": LogReturnLevelRepresentation,
    "minmax-ohlcv": MinMaxOHLCV,
}


def make_representation(name: str, **kwargs) -> Representation:
    """Build a representation by name, e.g. ``make_representation("log-returns", scaling="minmax")``."""
    cls = REPRESENTATIONS.get(name)
    if cls is None:
        hint = did_you_mean(name, REPRESENTATIONS, cutoff=0.6)
        raise ConfigError(f"unknown representation '{name}'{hint}; use one of {', '.join(REPRESENTATIONS)}")
    return cls(**kwargs)


def representation_from_dict(data: Mapping) -> Representation:
    """Rebuild a representation from ``to_dict()`` output (e.g. a checkpoint's representation.json)."""
    if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
        raise ModelError(f"not a saved representation (expected a dict with format '{_FORMAT}')")
    if data.get("version") not in _READABLE_VERSIONS:
        raise ModelError(f"unsupported representation version {data.get('version')!r}; expected one of "
                         f"{', '.join(map(str, _READABLE_VERSIONS))}")
    cls = REPRESENTATIONS.get(data.get("name"))
    if cls is None:
        raise ModelError(f"unknown representation {data.get('name')!r}; known: {', '.join(REPRESENTATIONS)}")
    if list(data.get("feature_names") or []) != list(cls.feature_names):
        raise ModelError(
            f"saved {cls.name} representation has features {data.get('feature_names')!r}, "
            f"expected {list(cls.feature_names)}"
        )
    try:
        rep = cls(scaling=data["scaling"])
        if data["center"] is not None:
            rep.center = _saved_vector(data["center"], rep.n_features, "center")
            rep.scale = _saved_vector(data["scale"], rep.n_features, "scale")
            if (rep.scale <= 0).any():
                raise ValueError("scale must be positive")
        if data["last_close"] is not None:
            rep.last_close = float(_positive(data["last_close"], "last_close", ModelError))
        if rep.scaling in QUANTILE_SCALINGS and rep.center is not None:
            rep.quantiles = QuantileMap.from_dict(data["quantile"], rep.n_features)
            if rep.quantiles.target != QUANTILE_SCALINGS[rep.scaling]:
                raise ValueError(f"quantile target {rep.quantiles.target} does not match scaling {rep.scaling}")
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"saved {cls.name} representation is malformed: {exc}") from exc
    return rep


def candles_frame(candles: np.ndarray) -> pd.DataFrame:
    """Candles ``[n, L, 5]`` as a long frame ``sample_id, timestep, open, high, low, close, volume``."""
    n, length, _ = candles.shape
    frame = pd.DataFrame(candles.reshape(n * length, 5), columns=list(OHLCV))
    frame.insert(0, "timestep", np.tile(np.arange(length), n))
    frame.insert(0, "sample_id", np.repeat(np.arange(n), length))
    return frame


def follows_previous_bar(bars: pd.DataFrame) -> np.ndarray:
    """``[T]``: rows whose previous row is the bar just before them (all but the first without a time column)."""
    keep = np.ones(len(bars), dtype=bool)
    keep[:1] = False
    if "time" in bars.columns and len(bars) > 1:
        times = pd.DatetimeIndex(bars["time"])
        if times.is_monotonic_increasing and times.is_unique:
            keep[1:] = ~time_breaks(times)
    return keep


def valid_ohlcv(bars: pd.DataFrame) -> np.ndarray:
    """``[T, 5]`` float64 OHLCV, or DataError saying how many rows are bad candles and where the first is."""
    missing = [c for c in OHLCV if c not in bars.columns]
    if missing:
        raise DataError(f"bars lack column(s) {', '.join(missing)}; expected {', '.join(OHLCV)}")
    if len(bars) == 0:
        raise DataError("no bars to encode")
    try:
        ohlcv = bars.loc[:, list(OHLCV)].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"bars have non-numeric prices or volumes ({exc})") from exc
    ok = valid_candles(ohlcv)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        where = f"time {bars['time'].iloc[bad[0]]}" if "time" in bars.columns else f"row {bad[0]}"
        raise DataError(
            f"{len(bad)} of {len(bars)} bars are not valid candles (need finite 0 < low <= min(open, close), "
            f"max(open, close) <= high, volume >= 0); first at {where}; clean the data before encoding"
        )
    return ohlcv


def _previous_closes(ohlcv: np.ndarray, prev_close: float | None) -> np.ndarray:
    """The close before each row; before the first, ``prev_close`` or (unknown) the first open."""
    close = ohlcv[:, 3]
    prev = np.empty_like(close)
    prev[1:] = close[:-1]
    prev[0] = ohlcv[0, 0] if prev_close is None else _positive(prev_close, "prev_close", DataError)
    return prev


def _exact_zeros(features: np.ndarray, columns: tuple[int, ...]) -> np.ndarray:
    """``features`` with values of ``columns`` within ``_ZERO_TOLERANCE`` of 0 set to exactly 0.

    A model that draws the atom "open == previous close" (gap 0) or "no wick" returns it through the scaler's
    inverse, which leaves a rounding residue of about 1e-12; decoded as it is, the open would differ from the
    previous close in the last bits and the atom would be lost in the candles."""
    out = np.array(features, dtype=np.float64, copy=True)
    for j in columns:
        column = out[..., j]
        column[np.abs(column) < _ZERO_TOLERANCE] = 0.0
    return out


def _positive(value, what: str, error: type[Exception]) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim > 1 or not (np.isfinite(array) & (array > 0)).all():
        raise error(f"{what} must be a finite positive price (or one per sample), got {value!r}")
    return array


def _model_array(output, n_features: int) -> np.ndarray:
    """Model output as float64 ``[n, L, F]``; accepts numpy arrays, lists and (CPU or GPU) torch tensors."""
    if hasattr(output, "detach"):
        output = output.detach().cpu().numpy()
    array = np.asarray(output, dtype=np.float64)
    array = array[None] if array.ndim == 2 else array
    if array.ndim != 3 or array.shape[-1] != n_features or array.shape[1] == 0:
        shapes = f"[n, L, {n_features}] or [L, {n_features}]"
        raise ModelError(f"model output must be shaped {shapes}, not {array.shape}")
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise ModelError(f"model output has {bad} non-finite value(s) (NaN or inf); the model diverged")
    return array


def _saved_vector(values, n: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n,) or not np.isfinite(array).all():
        raise ValueError(f"{what} must be {n} finite numbers")
    return array
