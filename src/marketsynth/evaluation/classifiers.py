"""Post-hoc models that judge synthetic data: TimeGAN's discriminative and predictive scores, and TSTR.

Discriminative and predictive scores follow the TimeGAN reference code (jsyoon0823/TimeGAN, ``metrics/``):
a 1-layer GRU with hidden = max(features // 2, 1), Adam (lr 1e-3), batches of 128 drawn at random.

* discriminative: the GRU's last state -> one logit; real and synthetic sets (equal sizes) are each split
  80/20; every iteration takes a batch of each and minimises BCE(real, 1) + BCE(synthetic, 0); the score is
  |accuracy - 0.5| on the held-out 20 %. 0 = indistinguishable, 0.5 = always told apart.
* predictive: the GRU reads steps 0..L-2 of the input columns and predicts the target column at steps 1..L-1
  (one step ahead); trained on one set with an L1 loss, scored by MAE on another.

``patience`` (None in the paper) turns on early stopping: 10 % of the training windows are held back, the
loss on them is checked every ``check_every`` iterations, training stops after ``patience`` checks without
improvement and the best weights are kept. ``iterations`` is then a maximum.

TSTR (train on synthetic, test on real; Esteban et al. 2017) uses a random forest instead: it needs no
scaling and little tuning, so differences come from the data rather than the optimiser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import RandomForestClassifier
from torch import nn

from marketsynth import splits
from marketsynth.evaluation.inputs import FEATURE_NAMES

TSTR_TARGETS = ("direction", "volatility")
_VALIDATION_FRACTION = 0.1


def paper_hidden(n_features: int) -> int:
    """The reference's GRU width: half the number of features (at least 1)."""
    return max(n_features // 2, 1)


class _GRUNet(nn.Module):
    """1-layer GRU + linear head: one output per window (last state) or one per step."""

    def __init__(self, n_inputs: int, hidden: int, per_step: bool, sigmoid: bool):
        super().__init__()
        self.gru = nn.GRU(n_inputs, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        self.per_step, self.sigmoid = per_step, sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, last = self.gru(x)
        out = self.head(steps if self.per_step else last[-1]).squeeze(-1)
        return torch.sigmoid(out) if self.sigmoid else out


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random (first, second) index sets, the second holding ``fraction`` of n (at least 1 when n >= 2)."""
    order = rng.permutation(n)
    second = min(max(1, round(n * fraction)), n - 1) if n >= 2 else 0
    return order[: n - second], order[n - second:]


def _purged_split(n: int, fraction: float, overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) index sets of ``n`` windows in time order: the second is interleaved blocks holding about
    ``fraction`` of them, and first-set windows within ``overlap`` positions of a second-set one are dropped, so
    that with stride-1 windows no window of one set shares a bar with a window of the other."""
    if n < 2:
        return np.arange(n), np.arange(0)
    second = splits.interleaved(n, max(2 * (overlap + 1), -(-n // 30)), fraction)
    first = ~splits.near(second, overlap)
    if not first.any():
        first = ~second
    return np.flatnonzero(first), np.flatnonzero(second)


def _batch(n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    return torch.as_tensor(rng.permutation(n)[: min(size, n)])


def _train(
    model: nn.Module,
    step_loss: Callable[[np.random.Generator], torch.Tensor],
    validation_loss: Callable[[], float] | None,
    *,
    iterations: int,
    patience: int | None,
    check_every: int,
    rng: np.random.Generator,
    lr: float,
) -> int:
    """Adam on ``step_loss`` for ``iterations`` steps (or until early stopping); returns the steps taken."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_state, stale = np.inf, None, 0
    for step in range(1, iterations + 1):
        loss = step_loss(rng)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if patience is None or validation_loss is None or step % check_every:
            continue
        current = validation_loss()
        if current < best - 1e-6:
            best, stale = current, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return step


def discriminative_score(
    real: np.ndarray,
    synthetic: np.ndarray,
    *,
    hidden: int | None = None,
    columns: Sequence[int] | None = None,
    iterations: int = 2000,
    batch_size: int = 128,
    test_fraction: float = 0.2,
    patience: int | None = None,
    check_every: int = 50,
    lr: float = 1e-3,
    overlap: int | None = None,
    seed: int = 0,
) -> float:
    """|accuracy - 0.5| of a post-hoc GRU telling real ``[n, L, F]`` from synthetic windows (see module doc).

    ``columns`` picks the features the classifier sees (e.g. only the close returns); ``hidden`` defaults to
    the paper's max(features // 2, 1). The larger set is subsampled to the smaller so chance is 50 %.

    ``overlap`` None splits each set at random (the paper). Stride-1 windows cut from one series share up to
    L - 1 bars with their neighbours, so a random split puts nearly every test window's bars in the training
    set, and a classifier wide enough to memorise bar sequences recognises "real" test windows by heart — it then
    tells real from real (10-day chunks against each other) at 0.48, and any generator at about the same. With
    ``overlap`` (the bars neighbouring windows may share, L - 1 for stride-1 windows; windows in time order) the
    test and validation windows are interleaved blocks and training windows within ``overlap`` positions of
    them are dropped (``_purged_split``), so the score measures what generalises.
    """
    rng = np.random.default_rng(seed)
    real, synthetic = np.asarray(real), np.asarray(synthetic)
    if columns is not None:
        real, synthetic = real[..., list(columns)], synthetic[..., list(columns)]
    n = min(len(real), len(synthetic))
    real = real[np.sort(rng.permutation(len(real))[:n])]  # time order kept for the purged split
    synthetic = synthetic[np.sort(rng.permutation(len(synthetic))[:n])]

    def split(count: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        return _split(count, fraction, rng) if overlap is None else _purged_split(count, fraction, overlap)

    sets = {}
    for name, data in (("real", real), ("synthetic", synthetic)):
        train, test = split(n, test_fraction)
        fit, val = split(len(train), _VALIDATION_FRACTION) if patience else (np.arange(len(train)), None)
        sets[name] = {"fit": _tensor(data[train][fit]), "test": _tensor(data[test]),
                      "val": None if val is None else _tensor(data[train][val])}
    hidden = hidden or paper_hidden(real.shape[-1])

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _GRUNet(real.shape[-1], hidden, per_step=False, sigmoid=False)

        def loss_on(r: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            real_logits, fake_logits = model(r), model(s)
            return F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + \
                F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))

        def step_loss(g: np.random.Generator) -> torch.Tensor:
            r, s = sets["real"]["fit"], sets["synthetic"]["fit"]
            return loss_on(r[_batch(len(r), batch_size, g)], s[_batch(len(s), batch_size, g)])

        def validation_loss() -> float:
            with torch.no_grad():
                return float(loss_on(sets["real"]["val"], sets["synthetic"]["val"]))

        _train(model, step_loss, validation_loss if patience else None, iterations=iterations,
               patience=patience, check_every=check_every, rng=rng, lr=lr)
        with torch.no_grad():
            real_right = (model(sets["real"]["test"]) > 0).numpy()
            fake_right = (model(sets["synthetic"]["test"]) <= 0).numpy()
    accuracy = np.concatenate([real_right, fake_right]).mean()
    return float(abs(accuracy - 0.5))


def predictive_score(
    train: np.ndarray,
    test: np.ndarray,
    *,
    hidden: int | None = None,
    target_column: int = -1,
    input_columns: Sequence[int] | None = None,
    iterations: int = 5000,
    batch_size: int = 128,
    sigmoid_output: bool = True,
    patience: int | None = None,
    check_every: int = 50,
    lr: float = 1e-3,
    seed: int = 0,
) -> float:
    """MAE on ``test`` of a GRU trained on ``train`` to predict ``target_column`` one step ahead.

    ``input_columns`` defaults to every column but the target (the paper); ``hidden`` to max(F // 2, 1) with F
    the number of columns of the data (the paper's int(dim / 2)). ``sigmoid_output`` suits [0, 1]-scaled data.
    """
    rng = np.random.default_rng(seed)
    train, test = np.asarray(train), np.asarray(test)
    n_columns = train.shape[-1]
    target = target_column % n_columns
    inputs = [c for c in range(n_columns) if c != target] if input_columns is None else list(input_columns)

    def xy(data: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return _tensor(data[:, :-1, inputs]), _tensor(data[:, 1:, target])

    fit, val = _split(len(train), _VALIDATION_FRACTION, rng) if patience else (np.arange(len(train)), None)
    fit_x, fit_y = xy(train[fit])
    val_x, val_y = xy(train[val]) if val is not None else (None, None)
    test_x, test_y = xy(test)
    hidden = hidden or paper_hidden(n_columns)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _GRUNet(len(inputs), hidden, per_step=True, sigmoid=sigmoid_output)

        def step_loss(g: np.random.Generator) -> torch.Tensor:
            idx = _batch(len(fit_x), batch_size, g)
            return F.l1_loss(model(fit_x[idx]), fit_y[idx])

        def validation_loss() -> float:
            with torch.no_grad():
                return float(F.l1_loss(model(val_x), val_y))

        _train(model, step_loss, validation_loss if patience else None, iterations=iterations,
               patience=patience, check_every=check_every, rng=rng, lr=lr)
        with torch.no_grad():
            return float(F.l1_loss(model(test_x), test_y))


def repeat(score: Callable[[int], float], repeats: int, seed: int = 0) -> dict:
    """Run ``score(seed + i)`` for i < repeats: ``{"mean", "std", "runs"}`` (the paper reports mean ± std)."""
    runs = [score(seed + i) for i in range(max(1, repeats))]
    return {"mean": float(np.mean(runs)), "std": float(np.std(runs)), "runs": runs}


def last_bar_target(features: np.ndarray, target: str) -> np.ndarray:
    """The quantity TSTR classifies, from unscaled window features ``[n, L, 5]`` (``inputs.window_features``).

    ``direction``: the last bar's close return (label: > 0, up). ``volatility``: the last bar's log range
    log(high / low) = upper + lower + |log(close / open)| (label: above the real training median), which
    volatility clustering makes predictable, unlike direction.
    """
    last = features[:, -1, :]
    gap, ret, upper, lower = (last[:, FEATURE_NAMES.index(name)] for name in ("gap", "ret", "upper", "lower"))
    if target == "direction":
        return ret
    if target == "volatility":
        return upper + lower + np.abs(ret - gap)
    raise ValueError(f"unknown TSTR target {target!r}; use one of {', '.join(TSTR_TARGETS)}")


def tstr(
    synthetic: np.ndarray,
    real_train: np.ndarray,
    real_test: np.ndarray,
    *,
    target: str = "direction",
    n_estimators: int = 50,
    min_samples_leaf: int = 10,
    n_jobs: int | None = None,
    seed: int = 0,
) -> dict[str, float | str]:
    """Train on synthetic vs train on real, both tested on held-out real windows (unscaled features).

    Inputs: the first L-1 bars of each window, flattened; label: the last bar's ``target`` (see
    ``last_bar_target``). Both training sets are cut to the same size. Returns the two accuracies, their
    ratio TSTR / TRTR (1 = synthetic data trains as good a model as real data) and ``chance``: the test
    accuracy of always guessing the majority class — when TRTR is near it the task says little.
    """
    rng = np.random.default_rng(seed)
    n = min(len(synthetic), len(real_train))
    synthetic = synthetic[rng.permutation(len(synthetic))[:n]]
    real_train = real_train[rng.permutation(len(real_train))[:n]]
    threshold = 0.0 if target == "direction" else float(np.median(last_bar_target(real_train, target)))

    def xy(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return windows[:, :-1, :].reshape(len(windows), -1), last_bar_target(windows, target) > threshold

    test_x, test_y = xy(real_test)
    accuracy = {}
    for name, data in (("tstr", synthetic), ("trtr", real_train)):
        x, y = xy(data)
        forest = RandomForestClassifier(n_estimators=n_estimators, min_samples_leaf=min_samples_leaf,
                                        n_jobs=n_jobs, random_state=seed)
        accuracy[name] = float(np.mean(forest.fit(x, y).predict(test_x) == test_y)) if len(set(y)) > 1 \
            else float(np.mean(test_y == y[0]))
    share_up = float(test_y.mean())
    return {"target": target, "tstr": accuracy["tstr"], "trtr": accuracy["trtr"],
            "ratio": accuracy["tstr"] / accuracy["trtr"] if accuracy["trtr"] > 0 else float("nan"),
            "chance": max(share_up, 1 - share_up)}
