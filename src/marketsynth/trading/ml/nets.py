"""The ensemble's three torch heads, their training loop, batch-independent prediction and the voting weights.

Every head reads the same input, a window ``[batch, seq_len, features]`` of standardised feature rows ending at the
bar being scored, and answers with its own kind of output, turned into P(up) for the vote:

- ``LstmHead``: a 3-layer LSTM (dropout between layers) over the sequence → the probability of an up move
  (binary cross-entropy);
- ``CnnHead``: ``Conv2d`` layers over the window as a one-channel ``seq_len × features`` image (3×3, then
  3 bars × all features, so the dense layer after them sees one value per channel and bar) → a pattern class,
  down / sideways / up, where sideways is a move smaller than the training moves' lower tercile (cross-entropy);
  P(up) for the vote is ``P(up) + P(sideways) / 2``;
- ``DenseHead``: ``Linear`` + ``BatchNorm1d`` layers over the microstructure columns (``samples.MICRO``: body,
  wicks, return, range, volume ratio) of the last ``micro_bars`` bars → a signal strength ``s = tanh(z / 2)`` in
  (−1, 1), trained as a classifier whose samples are weighted by the size of the move (``|r| / mean |r|``, at
  most 5), so strength follows the moves that matter; P(up) for the vote is ``(1 + s) / 2``.

``train_head``: Adam, seeded shuffling, gradient norm clipped at 1, early stopping on an inner validation split
(the best epoch's weights are kept). ``predict_up`` runs a head in chunks of exactly ``CHUNK`` windows aligned
on the window's position in the series (the last chunk zero-padded): a window's output then never depends on
how many later windows exist, which keeps ``signals`` exactly causal (matrix kernels may sum in a different
order for a different batch shape, and the causality check compares bit for bit).

``vote_weights``: convex weights ``softmax(a)`` over the heads' P(up), fitted by minimising the log-loss of
``sum_k w_k p_k`` on the held-out voting fold (L-BFGS, a small ridge on ``a`` pulling towards equal weights).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize
from torch import nn
from torch.nn import functional as F  # noqa: N812 - torch's convention

from marketsynth.trading.ml.samples import MICRO_INDEX

CHUNK = 256
HEADS = ("lstm", "cnn", "dnn")
_EPS = 1e-6


class LstmHead(nn.Module):
    def __init__(self, n_features: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                            batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(x)
        return self.out(states[:, -1]).squeeze(-1)

    @staticmethod
    def loss(out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(out, targets[:, 0])

    @staticmethod
    def up(out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)


class CnnHead(nn.Module):
    def __init__(self, seq_len: int, n_features: int, channels: int, dropout: float):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),  # local patterns over 3 bars × 3 features
            nn.Conv2d(channels, channels, (3, n_features), padding=(1, 0)), nn.ReLU(),  # each bar's whole row
        )
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(channels * seq_len, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(self.conv(x.unsqueeze(1)).flatten(1)))

    @staticmethod
    def loss(out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, targets[:, 1].long())

    @staticmethod
    def up(out: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(out, dim=-1)
        return p[:, 2] + 0.5 * p[:, 1]


class DenseHead(nn.Module):
    def __init__(self, micro_bars: int, hidden: int, dropout: float):
        super().__init__()
        self.micro_bars = micro_bars
        self.register_buffer("columns", torch.tensor(MICRO_INDEX, dtype=torch.long), persistent=False)
        width = micro_bars * len(MICRO_INDEX)
        self.net = nn.Sequential(
            nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        micro = x[:, -self.micro_bars:].index_select(2, self.columns).flatten(1)
        return self.net(micro).squeeze(-1)

    @staticmethod
    def loss(out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weights = targets[:, 2]
        per_sample = F.binary_cross_entropy_with_logits(out, targets[:, 0], reduction="none")
        return (per_sample * weights).sum() / weights.sum().clamp_min(_EPS)

    @staticmethod
    def up(out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)  # = (1 + tanh(z / 2)) / 2, the signal strength mapped to [0, 1]


@dataclass(frozen=True)
class Training:
    epochs: int
    patience: int
    batch_size: int
    lr: float
    device: torch.device


def train_head(head: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
               settings: Training, seed: int) -> dict:
    """Fit ``head`` in place on ``(windows, targets)``; keep the weights of the epoch with the lowest validation
    loss; stop after ``patience`` epochs without improvement. Targets: columns up (0/1), class (0/1/2), weight."""
    x, t = (a.to(settings.device) for a in train)
    vx, vt = (a.to(settings.device) for a in val)
    head.to(settings.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=settings.lr)
    shuffle = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, history = float("inf"), None, 0, []
    for epoch in range(1, settings.epochs + 1):
        head.train()
        order = torch.randperm(len(x), generator=shuffle).to(settings.device)
        for start in range(0, len(x), settings.batch_size):
            batch = order[start: start + settings.batch_size]
            if len(batch) < 2:  # BatchNorm needs two samples
                continue
            optimizer.zero_grad(set_to_none=True)
            loss = head.loss(head(x[batch]), t[batch])
            loss.backward()
            nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            optimizer.step()
        val_loss = _evaluate(head, vx, vt, settings.batch_size * 8)
        history.append(val_loss)
        if val_loss < best - 1e-6:
            best, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(head.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    head.load_state_dict(best_state)
    head.eval()
    return {"best_epoch": best_epoch, "epochs_run": len(history), "val_loss": best}


@torch.no_grad()
def _evaluate(head: nn.Module, x: torch.Tensor, t: torch.Tensor, batch: int) -> float:
    head.eval()
    total = 0.0
    for start in range(0, len(x), batch):
        part = slice(start, start + batch)
        total += float(head.loss(head(x[part]), t[part])) * len(x[part])
    return total / len(x)


@torch.no_grad()
def predict_up(head: nn.Module, windows: np.ndarray, first_ordinal: int, device: torch.device) -> np.ndarray:
    """P(up) of each window; ``windows[i]`` is window number ``first_ordinal + i`` of its series, and chunks are
    aligned on those numbers (module docstring)."""
    head.eval()
    n = len(windows)
    out = np.empty(n)
    if n == 0:
        return out
    start = first_ordinal - first_ordinal % CHUNK  # the aligned chunk holding the first window
    for chunk_start in range(start, first_ordinal + n, CHUNK):
        lo, hi = max(chunk_start, first_ordinal), min(chunk_start + CHUNK, first_ordinal + n)
        batch = np.zeros((CHUNK, *windows.shape[1:]), dtype=np.float32)
        batch[lo - chunk_start: hi - chunk_start] = windows[lo - first_ordinal: hi - first_ordinal]
        p = head.up(head(torch.from_numpy(batch).to(device))).double().cpu().numpy()
        out[lo - first_ordinal: hi - first_ordinal] = p[lo - chunk_start: hi - chunk_start]
    return out


def combine(votes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_k weights[k] * votes[:, k]``, added head by head so each row's sum never depends on how many rows
    there are (a matrix-vector product may take another path for one row than for many)."""
    out = np.zeros(len(votes))
    for k, w in enumerate(weights):
        out += w * votes[:, k]
    return out


def vote_weights(p: np.ndarray, up: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Convex weights over the columns of ``p [n, heads]`` minimising the log-loss of their weighted mean."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(up, dtype=np.float64)

    def objective(a: np.ndarray) -> tuple[float, np.ndarray]:
        w = np.exp(a - a.max())
        w /= w.sum()
        q = p @ w
        loss = -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)) + ridge * float(a @ a)
        dq = -(y / q - (1 - y) / (1 - q)) / len(y)  # d loss / d q
        dw = p.T @ dq
        grad = w * (dw - w @ dw) + 2 * ridge * a  # through the softmax
        return float(loss), grad

    result = minimize(objective, np.zeros(p.shape[1]), jac=True, method="L-BFGS-B")
    w = np.exp(result.x - result.x.max())
    return w / w.sum()
