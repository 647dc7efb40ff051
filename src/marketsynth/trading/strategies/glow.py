"""``glow``: trade the bars a trained Glow flow finds likely, in the direction one latent dimension points.

Every bar after the features' warm-up is described by its 16 features (``marketsynth.features.bar_features``: bar
``i`` and earlier bars only), which the flow (``marketsynth.models.glow``, attached with ``attach_model``; the CLI's
``--model DIR``) maps to a log-likelihood ``ll`` (nats per vector) and a latent code ``z`` (16 numbers).

Learned by ``fit`` on the training fold only (bars after it are never read; ``state()`` holds them as plain numbers):

- ``threshold``: the ``quantile`` of the training rows' ``ll``; ``ll_min``, ``ll_max``: their range; ``size_cuts``:
  the ``k / size_steps`` quantiles (k = 1 … size_steps − 1) of the ``ll`` of the training rows at or above the
  threshold;
- ``latent_dim``: the given dimension, or with ``"auto"`` the one whose sign best predicts the sign of the forward
  return ``log(close[i + horizon] / close[i])`` on the training rows that have one (highest share of rows where
  ``sign(direction × z_d) == sign(return)``, rows with a zero return left out; the lowest index on ties);
- ``direction``: the sign of the correlation between ``z[latent_dim]`` and that forward return (+1 when it is 0);
- ``clusters`` k-means centres of the training rows' latent codes (scikit-learn ``KMeans``, ``n_init=10``,
  ``random_state=seed``); a bar's regime is its nearest centre (squared Euclidean distance, the lowest index on
  ties). With ``trade_regimes="aligned"`` a regime is traded when its training rows' mean forward return has the
  sign its mean direction implies: ``sign(mean return) == sign(direction × mean z[latent_dim])``, both non-zero
  (a regime without training rows with a forward return is not traded); ``"all"`` trades every regime.

The signal of a bar with features (bars before the warm-up are flat, confidence NaN):

- ``size = (1 + number of size_cuts <= ll) / size_steps``: the likelihood normalised by its rank among the
  training fold's likely rows, in ``size_steps`` steps (the likeliest quarter of them trades full size with 4
  steps). Ranks, because log-likelihoods have a long low tail that would squeeze a min-max scale into on/off; steps,
  because a size that moved with every bar's likelihood would resize the position (an order, a fee) on every bar;
- ``target = direction × sign(z[latent_dim]) × size`` when ``ll >= threshold`` and the bar's regime is traded,
  else 0; a short target is 0 unless ``allow_short``;
- ``confidence = size`` on every bar with features, traded or not.

The flow itself is trained beforehand (``marketsynth train --model glow``) and is not refitted per fold: ``fit``
warns when the checkpoint's candles end after the training fold (its likelihoods of the test bars are then
in-sample) and records that end in ``state()["training"]["model_trained_until"]``.

Exactness. The flow treats rows independently, but a row's floating-point result depends on how many rows are
scored with it (matrix kernels differ with the batch shape: one row alone and the same row in a batch of 1 000 differ
in the last bits). So rows are always scored in blocks of ``BLOCK`` rows aligned to the first feature row, the
rows after the last known one filled with copies of it: a bar's numbers are then the same whether the frame ends
there or goes on, and the event path (``on_bar``), which keeps the features incrementally (O(1) per bar plus one
flow call on a block), gives bit for bit the targets of the vectorised path (``signals``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from marketsynth.checkpoint import load_checkpoint
from marketsynth.errors import ConfigError, DataError
from marketsynth.features import FEATURE_NAMES, RSI_BARS, WARMUP_BARS, bar_features
from marketsynth.models.capabilities import Likelihood
from marketsynth.trading.strategy import History, Signal, Strategy, signal_frame

BLOCK = 256  # rows per flow call; ~the cost of one row for the default glow
STATE_FORMAT = "marketsynth.glow-strategy"
REGIME_CHOICES = ("aligned", "all")
_MODEL_HINT = "pass --model DIR, a checkpoint written by 'marketsynth train --model glow ...'"
_FLAT = Signal(0.0)


class GlowStrategy(Strategy):
    """Likelihood filter, latent direction, likelihood sizing and latent regimes (see the module docstring)."""

    name = "glow"
    learns: ClassVar[bool] = True
    needs_model: ClassVar[str | None] = "glow"

    quantile: float = 0.5
    size_steps: int = 4
    latent_dim: str = "auto"
    clusters: int = 4
    trade_regimes: str = "aligned"
    horizon: int = 1
    seed: int = 0

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._model = None
        self._model_source = ""
        self._model_end: pd.Timestamp | None = None
        self._learned: dict[str, Any] | None = None
        self._event: _EventState | None = None

    def validate(self) -> None:
        if self.size_steps < 1:
            raise ConfigError(f"glow: size_steps is the number of position sizes (1 = always full size), got "
                              f"{self.size_steps}")
        if not 0.0 <= self.quantile < 1.0:
            raise ConfigError(f"glow: quantile is the likelihood threshold as a quantile of the training bars' "
                              f"log-likelihoods, in [0, 1) (0.5 trades the likelier half), got {self.quantile}")
        self.latent_dim = str(self.latent_dim).strip().lower()
        if self.latent_dim != "auto":
            if not self.latent_dim.isdigit() or int(self.latent_dim) >= len(FEATURE_NAMES):
                raise ConfigError(f"glow: latent_dim must be 'auto' or a latent dimension 0..{len(FEATURE_NAMES) - 1}"
                                  f", got {self.latent_dim!r}")
            self.latent_dim = str(int(self.latent_dim))
        if self.clusters < 1:
            raise ConfigError(f"glow: clusters (k of k-means on the latent codes) must be at least 1, got "
                              f"{self.clusters}")
        self.trade_regimes = str(self.trade_regimes).strip().lower()
        if self.trade_regimes not in REGIME_CHOICES:
            raise ConfigError(f"glow: trade_regimes must be one of {', '.join(REGIME_CHOICES)}, got "
                              f"{self.trade_regimes!r}")
        if self.horizon < 1:
            raise ConfigError(f"glow: horizon must be at least 1 bar, got {self.horizon}")
        if self.seed < 0:
            raise ConfigError(f"glow: seed must be 0 or more, got {self.seed}")

    @property
    def warmup(self) -> int:
        return WARMUP_BARS + 1

    @property
    def fitted(self) -> bool:
        return self._learned is not None

    # ------------------------------------------------------------------------------------------ the model
    def attach_model(self, checkpoint: Any) -> None:
        """Use a trained glow: a loaded checkpoint (``marketsynth.checkpoint.load_checkpoint``), its folder, or
        the model itself. Anything else is a ConfigError naming what the checkpoint holds."""
        if isinstance(checkpoint, str | Path):
            checkpoint = load_checkpoint(checkpoint)
        model = getattr(checkpoint, "model", checkpoint)
        where = getattr(checkpoint, "path", None) or "DIR"
        name = getattr(model, "name", type(model).__name__)
        if not (isinstance(model, Likelihood) and getattr(model, "models_candles", True) is False
                and tuple(getattr(model, "feature_names", ())) == FEATURE_NAMES and hasattr(model, "encode")):
            raise ConfigError(f"--model {where} holds a {name} checkpoint; the glow strategy needs a glow model "
                              f"(train one with 'marketsynth train --model glow ...')")
        self._model, self._model_source, self._event = model, str(where), None
        end = (getattr(checkpoint, "meta", None) or {}).get("end")
        self._model_end = pd.Timestamp(end) if end else None

    def _require_model(self):
        if self._model is None:
            raise ConfigError(f"the glow strategy needs a trained glow model: {_MODEL_HINT}")
        return self._model

    def _require_fitted(self) -> dict[str, Any]:
        self._require_model()
        if self._learned is None:
            raise ConfigError("the glow strategy is not fitted: call fit(training bars) first (backtests run it "
                              "walk-forward) or load_state(a saved state)")
        return self._learned

    def _encode(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latent codes and log-likelihoods of feature rows, scored in aligned blocks (module docstring)."""
        model = self._require_model()
        m = len(rows)
        z, ll = np.empty((m, rows.shape[1])), np.empty(m)
        for start in range(0, m, BLOCK):
            chunk = rows[start:start + BLOCK]
            k = len(chunk)
            if k < BLOCK:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], BLOCK - k, axis=0)])
            codes, logp = model.encode(chunk)
            z[start:start + k], ll[start:start + k] = codes[:k], logp[:k]
        return z, ll

    # ------------------------------------------------------------------------------------------ learning
    def fit(self, bars: pd.DataFrame) -> None:
        """Learn threshold, range, latent dimension, direction and regimes from ``bars`` (the training fold)."""
        self._require_model()
        bars = _checked(bars)
        n, k = len(bars), self.clusters
        need = WARMUP_BARS + max(k, 2) + self.horizon
        if n < need:
            raise DataError(f"{n} training bars are too few for glow: it needs {need} ({WARMUP_BARS} of feature "
                            f"history, {max(k, 2)} rows for {k} cluster(s) and {self.horizon} bar(s) of forward "
                            f"return); use a longer training fold")
        z, ll = self._encode(bar_features(bars).to_numpy(dtype=np.float64))
        close = bars["close"].to_numpy(dtype=np.float64)
        rows = np.arange(WARMUP_BARS, n)
        ahead = rows + self.horizon
        forward = np.full(len(rows), np.nan)
        inside = ahead < n  # the fold's own bars only
        forward[inside] = np.log(close[ahead[inside]] / close[rows[inside]])
        known = np.isfinite(forward)

        accuracy = [_accuracy(z[known, d], forward[known]) for d in range(z.shape[1])]
        dim = int(np.argmax(accuracy)) if self.latent_dim == "auto" else int(self.latent_dim)
        direction = _direction(z[known, dim], forward[known])
        centers = _kmeans(z, k, self.seed)
        regime = nearest(z, centers)
        cluster_rows, cluster_return, traded = [], [], []
        for c in range(len(centers)):
            member = regime == c
            with_return = member & known
            mean_return = float(forward[with_return].mean()) if with_return.any() else float("nan")
            implied = np.sign(direction * z[member, dim].mean()) if member.any() else 0.0
            aligned = bool(with_return.any() and implied != 0 and np.sign(mean_return) == implied)
            cluster_rows.append(int(member.sum()))
            cluster_return.append(mean_return)
            traded.append(True if self.trade_regimes == "all" else aligned)
        self._warn_if_model_saw_later_bars(bars)
        self._learned = {
            "threshold": float(np.quantile(ll, self.quantile)), "ll_min": float(ll.min()),
            "ll_max": float(ll.max()), "size_cuts": _size_cuts(ll, float(np.quantile(ll, self.quantile)),
                                                               self.size_steps),
            "latent_dim": dim, "direction": direction,
            "centers": centers.tolist(), "traded": traded,
            "training": {"bars": n, "rows": int(len(ll)), "rows_with_return": int(known.sum()),
                         "start": str(bars["time"].iat[0]) if "time" in bars else None,
                         "end": str(bars["time"].iat[-1]) if "time" in bars else None,
                         "accuracy": [None if math.isnan(a) else float(a) for a in accuracy],
                         "cluster_rows": cluster_rows,
                         "cluster_mean_return": [None if math.isnan(r) else r for r in cluster_return],
                         "model": self._model_source,
                         "model_trained_until": None if self._model_end is None else self._model_end.isoformat()},
        }
        self._event = None

    def _warn_if_model_saw_later_bars(self, bars: pd.DataFrame) -> None:
        """The flow itself is not refitted per fold: when its checkpoint says it was trained on candles after the
        training fold, its likelihoods of the test bars are in-sample (a look-ahead this class cannot undo)."""
        if self._model_end is None or "time" not in bars or not len(bars):
            return
        fold_end = pd.Timestamp(bars["time"].iat[-1])
        model_end = self._model_end
        if (fold_end.tzinfo is None) != (model_end.tzinfo is None):
            fold_end, model_end = (t.tz_localize("UTC") if t.tzinfo is None else t for t in (fold_end, model_end))
        if model_end > fold_end:
            warnings.warn(f"the glow model in {self._model_source} was trained on candles up to {model_end}, after "
                          f"this training fold ends ({fold_end}): its likelihoods of later bars are in-sample; "
                          f"train it on candles before the test period for an honest backtest", stacklevel=3)

    def state(self) -> dict[str, Any]:
        """The parameters and everything learned, JSON-safe (no arrays, no pickle)."""
        learned = self._require_fitted()
        return {"format": STATE_FORMAT, "version": 1, "strategy": self.name, "params": self.params(),
                **{key: value for key, value in learned.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore parameters and learned numbers saved by ``state()``; the model is attached separately."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ConfigError(f"not a saved glow strategy state (expected format '{STATE_FORMAT}'); save one with "
                              f"state() after fit")
        try:
            fresh = type(self)(**dict(state["params"]))
            centers = np.asarray(state["centers"], dtype=np.float64)
            learned = {"threshold": float(state["threshold"]), "ll_min": float(state["ll_min"]),
                       "ll_max": float(state["ll_max"]), "size_cuts": [float(c) for c in state["size_cuts"]],
                       "latent_dim": int(state["latent_dim"]),
                       "direction": float(state["direction"]), "centers": centers.tolist(),
                       "traded": [bool(t) for t in state["traded"]], "training": dict(state.get("training") or {})}
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"saved glow strategy state is malformed ({exc}); save it again with state()") from None
        if (centers.ndim != 2 or centers.shape[1] != len(FEATURE_NAMES) or len(learned["traded"]) != len(centers)
                or not 0 <= learned["latent_dim"] < len(FEATURE_NAMES) or learned["direction"] not in (-1.0, 1.0)):
            raise ConfigError("saved glow strategy state is malformed (centres, traded regimes, latent dimension or "
                              "direction do not fit); save it again with state()")
        for key, value in fresh.params().items():
            setattr(self, key, value)
        self._learned, self._event = learned, None

    # ------------------------------------------------------------------------------------------ signals
    def _decide(self, z: np.ndarray, ll: np.ndarray) -> dict[str, np.ndarray]:
        """Per-row decisions from latent codes and log-likelihoods; elementwise only, so a row's result does not
        depend on the other rows given with it."""
        learned = self._learned
        cuts = np.asarray(learned["size_cuts"], dtype=np.float64)
        size = (1.0 + (ll[:, None] >= cuts[None, :]).sum(axis=1)) / (len(cuts) + 1)
        latent = z[:, learned["latent_dim"]]
        regime = nearest(z, np.asarray(learned["centers"]))
        traded = np.asarray(learned["traded"], dtype=bool)[regime]
        above = ll >= learned["threshold"]
        target = np.where(above & traded, learned["direction"] * np.sign(latent) * size, 0.0)
        if not self.allow_short:
            target = np.maximum(target, 0.0)
        return {"log_likelihood": ll, "latent": latent, "regime": regime, "above": above, "traded": traded,
                "size": size, "target": target + 0.0}  # + 0.0: no negative zeros

    def scores(self, bars: pd.DataFrame) -> pd.DataFrame:
        """Per bar: ``log_likelihood``, ``latent`` (the direction dimension), ``regime``, ``above`` (the
        threshold), ``traded`` (the regime), ``size`` and ``target``; NaN (regime -1) during the warm-up."""
        self._require_fitted()
        bars = _checked(bars)
        n = len(bars)
        out = pd.DataFrame({"log_likelihood": np.full(n, np.nan), "latent": np.full(n, np.nan),
                            "regime": np.full(n, -1), "above": np.zeros(n, bool), "traded": np.zeros(n, bool),
                            "size": np.full(n, np.nan), "target": np.zeros(n)}, index=bars.index)
        if n <= WARMUP_BARS:
            return out
        decided = self._decide(*self._encode(bar_features(bars).to_numpy(dtype=np.float64)))
        for column, values in decided.items():
            out.iloc[WARMUP_BARS:, out.columns.get_loc(column)] = values
        return out

    def signals(self, bars: pd.DataFrame) -> pd.DataFrame:
        table = self.scores(bars)
        return signal_frame(table["target"].to_numpy(), table["size"].to_numpy(), index=table.index)

    def on_bar(self, history: History) -> Signal:
        """The current bar's signal: its features from the last ``WARMUP_BARS + 1`` bars and an incremental RSI,
        the flow run on its block only. A history that does not continue the previous one rebuilds the state."""
        self._require_fitted()
        n = len(history)
        if n <= WARMUP_BARS:
            self._event = None
            return _FLAT
        event = self._event
        if event is None or not event.continues(history):
            event = self._event = _EventState.rebuild(history)
        else:
            event.advance(history)
        z, ll = self._model.encode(event.block)
        decided = self._decide(z[event.pos:event.pos + 1], ll[event.pos:event.pos + 1])
        return Signal(float(decided["target"][0]), float(decided["size"][0]))


class _EventState:
    """What ``on_bar`` keeps between bars: the current block of feature rows and Wilder's RSI averages."""

    __slots__ = ("count", "last_time", "last_close", "rsi", "block", "pos")

    @classmethod
    def rebuild(cls, history: History) -> _EventState:
        state = cls()
        rows = bar_features(history.frame()).to_numpy(dtype=np.float64)
        state.pos = (len(rows) - 1) % BLOCK
        state.block = np.empty((BLOCK, rows.shape[1]))
        state.block[: state.pos + 1] = rows[len(rows) - 1 - state.pos:]
        state.block[state.pos + 1:] = rows[-1]
        state.rsi = _WilderRsi(history.close)
        state._remember(history)
        return state

    def _remember(self, history: History) -> None:
        self.count = len(history)
        self.last_time, self.last_close = history.time[-1], float(history.close[-1])

    def continues(self, history: History) -> bool:
        """``history`` is the previous one plus one bar."""
        return (len(history) == self.count + 1 and history.time[-2] == self.last_time
                and float(history.close[-2]) == self.last_close)

    def advance(self, history: History) -> None:
        tail = slice(len(history) - WARMUP_BARS - 1, len(history))
        frame = pd.DataFrame({k: getattr(history, k)[tail] for k in ("open", "high", "low", "close", "volume")})
        row = bar_features(frame).to_numpy(dtype=np.float64)[-1].copy()  # exact except the RSI, which needs all bars
        row[FEATURE_NAMES.index("rsi")] = self.rsi.update(float(history.close[-1]))
        self.pos = (self.pos + 1) % BLOCK
        self.block[self.pos:] = row
        self._remember(history)


class _WilderRsi:
    """``marketsynth.features.wilder_rsi`` one bar at a time, with the same arithmetic (so the same bits)."""

    __slots__ = ("gain", "loss", "previous")

    def __init__(self, close: np.ndarray):
        if len(close) <= RSI_BARS:
            raise DataError(f"an incremental RSI needs more than {RSI_BARS} closes, got {len(close)}")
        delta = np.diff(np.asarray(close, dtype=np.float64))
        gains, losses = np.maximum(delta, 0.0), np.maximum(-delta, 0.0)
        gain, loss = gains[:RSI_BARS].mean(), losses[:RSI_BARS].mean()
        for t in range(RSI_BARS + 1, len(close)):
            gain = (gain * (RSI_BARS - 1) + gains[t - 1]) / RSI_BARS
            loss = (loss * (RSI_BARS - 1) + losses[t - 1]) / RSI_BARS
        self.gain, self.loss, self.previous = float(gain), float(loss), float(close[-1])

    def update(self, close: float) -> float:
        delta = close - self.previous
        self.previous = close
        self.gain = (self.gain * (RSI_BARS - 1) + max(delta, 0.0)) / RSI_BARS
        self.loss = (self.loss * (RSI_BARS - 1) + max(-delta, 0.0)) / RSI_BARS
        return self.value

    @property
    def value(self) -> float:
        if self.loss > 0:
            return 100.0 - 100.0 / (1.0 + self.gain / self.loss)
        return 100.0 if self.gain > 0 else 50.0


# ---------------------------------------------------------------------------------------------- helpers
def nearest(z: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest centre of each row (squared Euclidean distance summed dimension by dimension, so a
    row's answer does not depend on the other rows; the lowest index on ties)."""
    distance = np.zeros((len(z), len(centers)))
    for d in range(centers.shape[1]):
        distance += (z[:, d, None] - centers[None, :, d]) ** 2
    return distance.argmin(axis=1)


def _checked(bars: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(bars, pd.DataFrame):
        raise DataError(f"bars must be a pandas DataFrame (time, open, high, low, close, volume), got "
                        f"{type(bars).__name__}")
    missing = [c for c in ("open", "high", "low", "close", "volume") if c not in bars.columns]
    if missing:
        raise DataError(f"bars lack column(s) {', '.join(missing)}; expected time, open, high, low, close, volume")
    return bars


def _accuracy(latent: np.ndarray, forward: np.ndarray) -> float:
    """Share of rows with a non-zero forward return whose sign ``direction × sign(latent)`` calls."""
    moved = forward != 0
    if not moved.any():
        return float("nan") if not len(forward) else 0.0
    called = _direction(latent, forward) * np.sign(latent[moved])
    return float((called == np.sign(forward[moved])).mean())


def _direction(latent: np.ndarray, forward: np.ndarray) -> float:
    """The sign of the correlation (of the covariance) of the latent value and the forward return; +1 when 0."""
    if len(latent) < 2:
        return 1.0
    covariance = float(((latent - latent.mean()) * (forward - forward.mean())).mean())
    return -1.0 if covariance < 0 else 1.0


def _kmeans(z: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans  # lazy: scikit-learn is only needed to fit
    from threadpoolctl import threadpool_limits

    distinct = len(np.unique(z, axis=0))
    if distinct < k:
        raise DataError(f"glow: {k} clusters need at least {k} distinct training rows, got {distinct}; lower "
                        f"clusters or use a longer training fold")
    with threadpool_limits(1):  # tiny problem: OpenMP threads on shared cores only wait for each other
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(z).cluster_centers_.astype(np.float64)


def _size_cuts(ll: np.ndarray, threshold: float, steps: int) -> list[float]:
    """The ``k / steps`` quantiles (k = 1 … steps − 1) of the log-likelihoods at or above the threshold."""
    likely = ll[ll >= threshold]
    if steps <= 1 or len(likely) == 0:
        return []
    return [float(q) for q in np.quantile(likely, np.arange(1, steps) / steps)]
