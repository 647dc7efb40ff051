"""``ensemble``: an LSTM, a CNN and a dense network, combined by weighted voting learned on a validation fold.

Inputs
    For every bar ``t`` with a full window, the standardised feature rows (``samples.feature_table``, z-scores
    fitted on the heads' training bars only, clipped at ±5) of the ``seq_len`` bars ending at ``t``, cut with the
    project's window cutter so no window spans a time gap. The label is the sign of ``close[t + horizon] /
    close[t]``. ``warmup`` is ``WARMUP_BARS + seq_len`` bars (the first window's last bar, plus one).

Heads (``trading.ml.nets``)
    an LSTM (``lstm_layers`` layers, dropout) over the window → P(up); a CNN (2-D convolutions over the window ×
    features grid) → pattern class down / sideways / up; a dense network with batch norm over the last
    ``micro_bars`` bars' microstructure (body, wicks, return, range, volume) → signal strength. Each is trained
    with Adam (``lr``, ``batch_size``) for at most ``epochs`` epochs with early stopping (``patience``) on an inner
    validation split, seeded: same seed, same data, same device → the same predictions.

How ``fit(bars, extra=None)`` splits the bars (in time order, each boundary purged by ``horizon`` bars so no
training label overlaps a later part's labels)

    | heads' training windows | heads' early stopping (``val_fraction``) | voting fold (``vote_fraction``) |

The voting fold is never trained on by the heads: their P(up) there fit the convex voting weights (``nets``), so
a head that learned nothing that carries over gets little weight. ``extra`` is a list of further bars frames
(e.g. synthetic paths): each is cut into windows on its own (standardised with the real bars' z-scores) and its
windows are added to the heads' training windows only, never to the early-stopping split or the voting fold,
which stay real bars.

``device``: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto``. Defaults are small (16 LSTM units, 8 conv
channels, 32 dense units, windows of 24 bars): a 4-fold walk-forward backtest over a year of BTCUSDT 1h bars
(fits on 1 752 to 7 008 bars, one CPU thread) took 79 s wall-clock, 35 s of CPU, on a busy 2-core machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from marketsynth.errors import ConfigError, DataError, ModelError
from marketsynth.features import FeatureStandardiser
from marketsynth.trading.ml import nets
from marketsynth.trading.ml.base import DirectionStrategy, check_counts
from marketsynth.trading.ml.samples import (
    FEATURES,
    FIRST_ROW,
    bar_step,
    feature_table,
    fit_standardiser,
    forward_returns,
    labelled,
    purged_split,
    sequences,
    standardised,
    window_ends,
)
from marketsynth.training.distributed import resolve_device

_MIN = {"training": 200, "early-stopping": 40, "voting": 60}


class EnsembleStrategy(DirectionStrategy):
    """LSTM + CNN + DNN heads, weighted vote → P(up) → target (see ``trading.ml.base`` for the sizing)."""

    name = "ensemble"

    seq_len: int = 24
    lstm_hidden: int = 16
    lstm_layers: int = 3
    cnn_channels: int = 8
    dnn_hidden: int = 32
    micro_bars: int = 4
    dropout: float = 0.2
    epochs: int = 40
    patience: int = 6
    batch_size: int = 64
    lr: float = 5e-3
    val_fraction: float = 0.15
    vote_fraction: float = 0.2
    device: str = "cpu"

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._heads: dict[str, torch.nn.Module] = {}
        self._weights = np.full(len(nets.HEADS), 1.0 / len(nets.HEADS))
        self._standardiser: FeatureStandardiser | None = None
        self._device = torch.device("cpu")

    def validate(self) -> None:
        super().validate()
        small = {k: getattr(self, k) for k in ("seq_len", "lstm_hidden", "lstm_layers", "cnn_channels", "dnn_hidden",
                                                 "micro_bars", "epochs", "patience")
                 if getattr(self, k) < 1}
        if small:
            raise ConfigError(f"ensemble: {', '.join(f'{k}={v}' for k, v in small.items())}; each must be at least 1")
        if self.micro_bars > self.seq_len:
            raise ConfigError(f"ensemble: micro_bars ({self.micro_bars}) must not exceed seq_len ({self.seq_len})")
        if self.batch_size < 2:
            raise ConfigError(f"ensemble: batch_size must be at least 2 (batch norm), got {self.batch_size}")
        if not 0 <= self.dropout < 1 or not self.lr > 0:
            raise ConfigError(f"ensemble needs 0 <= dropout < 1 and lr > 0, got dropout={self.dropout}, lr={self.lr}")
        for key in ("val_fraction", "vote_fraction"):
            if not 0 < getattr(self, key) < 0.5:
                raise ConfigError(f"ensemble: {key} must be between 0 and 0.5, got {getattr(self, key)}")
        resolve_device(self.device)  # ModelError naming the choices when it is unknown or absent

    @property
    def warmup(self) -> int:
        return FIRST_ROW + self.seq_len

    @property
    def voting_weights(self) -> dict[str, float]:
        return {name: float(w) for name, w in zip(nets.HEADS, self._weights, strict=True)}

    # ------------------------------------------------------------------------------------------ fitting
    def _fit(self, bars: pd.DataFrame, extra: list[pd.DataFrame]) -> None:
        device = resolve_device(self.device)
        step = bar_step(bars)
        table = feature_table(bars)
        returns = forward_returns(bars, self.horizon, step)
        ends = labelled(returns, window_ends(bars, self.seq_len, step))
        hint = (f"give it more bars (a longer training period), a shorter seq_len or smaller val_fraction/"
                f"vote_fraction ({len(bars)} bars gave {len(ends)} labelled windows)")
        if len(ends) < sum(_MIN.values()):
            check_counts("ensemble", {"training": len(ends)}, {"training": sum(_MIN.values())}, hint)
        rest, vote = purged_split(ends, self.vote_fraction, self.horizon)
        fit_ends, val_ends = purged_split(rest, self.val_fraction, self.horizon)
        check_counts("ensemble", {"training": len(fit_ends), "early-stopping": len(val_ends),
                                  "voting": len(vote)}, _MIN, hint)

        self._standardiser = fit_standardiser(table[: fit_ends[-1] - FIRST_ROW + 1])
        rows = standardised(table, self._standardiser)
        moves = np.abs(returns[fit_ends])
        band, scale = float(np.quantile(moves, 1 / 3)), float(moves.mean())

        def samples(rows_: np.ndarray, returns_: np.ndarray, ends_: np.ndarray) -> tuple[torch.Tensor, ...]:
            r = returns_[ends_]
            targets = np.column_stack([r > 0, np.where(r > band, 2, np.where(r < -band, 0, 1)),
                                       np.minimum(np.abs(r) / scale, 5.0)]).astype(np.float32)
            return torch.from_numpy(sequences(rows_, ends_, self.seq_len)), torch.from_numpy(targets)

        train_x, train_t = samples(rows, returns, fit_ends)
        extra_count = 0
        for i, frame in enumerate(extra):
            try:
                frame_returns = forward_returns(frame, self.horizon, step)
                frame_ends = labelled(frame_returns, window_ends(frame, self.seq_len, step))
                frame_rows = standardised(feature_table(frame), self._standardiser)
            except DataError as exc:
                raise DataError(f"extra[{i}]: {exc}") from exc
            if len(frame_ends):
                ex, et = samples(frame_rows, frame_returns, frame_ends)
                train_x, train_t = torch.cat([train_x, ex]), torch.cat([train_t, et])
                extra_count += len(frame_ends)
        val = samples(rows, returns, val_ends)
        vote_x = sequences(rows, vote, self.seq_len)

        settings = nets.Training(self.epochs, self.patience, self.batch_size, self.lr, device)
        summary: dict[str, Any] = {"training_windows": len(fit_ends), "extra_windows": extra_count,
                                   "early_stopping_windows": len(val_ends), "voting_windows": len(vote),
                                   "sideways_band": band, "device": str(device)}
        votes = []
        for k, name in enumerate(nets.HEADS):
            head_seed = self.seed * 1000 + k
            with torch.random.fork_rng(devices=_rng_devices(device)):
                torch.manual_seed(head_seed)  # initial weights and dropout masks
                head = self._build(name)
                summary[name] = nets.train_head(head, (train_x, train_t), val, settings, head_seed)
            self._heads[name] = head
            votes.append(nets.predict_up(head, vote_x, 0, device))
        votes = np.column_stack(votes)
        up = returns[vote] > 0
        self._weights = nets.vote_weights(votes, up)
        combined = nets.combine(votes, self._weights)
        summary["voting_accuracy"] = {name: float(np.mean((votes[:, k] > 0.5) == up))
                                      for k, name in enumerate(nets.HEADS)}
        summary["voting_accuracy"]["ensemble"] = float(np.mean((combined > 0.5) == up))
        summary["weights"] = self.voting_weights
        self._step, self._device = step, device
        self.training_summary = summary

    def _build(self, name: str) -> torch.nn.Module:
        n = len(FEATURES)
        if name == "lstm":
            return nets.LstmHead(n, self.lstm_hidden, self.lstm_layers, self.dropout)
        if name == "cnn":
            return nets.CnnHead(self.seq_len, n, self.cnn_channels, self.dropout)
        return nets.DenseHead(self.micro_bars, self.dnn_hidden, self.dropout)

    # ------------------------------------------------------------------------------------------ prediction
    def _probabilities(self, bars: pd.DataFrame, last_only: bool) -> np.ndarray:
        out = np.full(len(bars), np.nan)
        ends = window_ends(bars, self.seq_len, self._step)
        if len(ends) == 0:
            return out
        first = 0
        if last_only:
            if ends[-1] != len(bars) - 1:
                return out  # the last bar has no gap-free window
            first = len(ends) - 1
        rows = standardised(feature_table(bars), self._standardiser)
        windows = sequences(rows, ends[first:], self.seq_len)
        votes = np.column_stack([nets.predict_up(self._heads[name], windows, first, self._device)
                                 for name in nets.HEADS])
        out[ends[first:]] = nets.combine(votes, self._weights)
        return out

    # ------------------------------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"{name}.{key}": value.detach().cpu().numpy()
                  for name, head in self._heads.items() for key, value in head.state_dict().items()}
        state = {"features": list(FEATURES), "weights": [float(w) for w in self._weights],
                 "standardiser": self._standardiser.to_dict()}
        return state, arrays

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if list(state.get("features", [])) != list(FEATURES):
            raise ModelError("the saved ensemble was fitted on other features than this version computes; fit it "
                             "again")
        weights = np.asarray(state["weights"], dtype=np.float64)
        if weights.shape != (len(nets.HEADS),) or not np.isfinite(weights).all() or (weights < 0).any():
            raise ModelError(f"saved voting weights {state['weights']!r} are malformed; fit and save it again")
        self._weights = weights
        self._standardiser = FeatureStandardiser.from_dict(state["standardiser"])
        self._device = resolve_device(self.device)
        for name in nets.HEADS:
            head = self._build(name)
            prefix = f"{name}."
            tensors = {key[len(prefix):]: torch.from_numpy(value.copy()) for key, value in arrays.items()
                       if key.startswith(prefix)}
            try:
                head.load_state_dict(tensors, strict=True)
            except RuntimeError as exc:
                reason = str(exc).strip().splitlines()[0]
                raise ModelError(f"the saved {name} head does not fit the saved parameters ({reason})") from None
            head.to(self._device).eval()
            self._heads[name] = head


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []
