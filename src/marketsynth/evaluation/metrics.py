"""The orchestrator behind ``marketsynth evaluate``: every metric on real vs synthetic candle windows.

Inputs are candle windows ``[n, L, 5]`` in price units. Return statistics, stylized facts, coverage, TSTR and
memorization always work on window-relative, scale-free features (``inputs.window_features``) standardised
with the real data's statistics. ``protocol`` only changes the TimeGAN-paper scores:

* ``"default"``: discriminative and predictive GRUs on those standardised features. The predictive GRU
  forecasts the next bar's log volume from the whole past bar (all five features; volume is the one feature
  a small forecaster can predict, and the last column as in the paper). The predictive reference (``real``)
  trains on real windows and is tested on the same held-out real windows as the synthetic-trained one.
  To fit the time budget (5,000 windows of 24 bars in under 2 minutes on 2 CPU cores) both GRUs train with
  batches of 512, lr 1e-2, at most 600 iterations, and stop early after 3 checks (every 50 iterations)
  without a better loss on 10 % of their training windows. On hourly BTC windows this reaches the paper
  settings' scores (2,000 iterations, batch 128, lr 1e-3) about ten times faster: the discriminator spots
  time-shuffled windows (score 0.35 vs 0.30) and real-vs-real scores stay near 0.05.
* ``"timegan"``: the paper exactly: raw columns min-max scaled with the real data's minimum and maximum,
  hidden = max(F // 2, 1), 2,000 / 5,000 iterations, batch 128, 80/20 split, predict the last column one step
  ahead from the other columns with a sigmoid output; the reference trains and tests on the real windows.

Real windows should not have been seen by the model when ``train_windows`` (its training windows) are given.
Without them the real windows (in time order) are split into interleaved blocks, 70 % standing in for the
training data and 30 % held out (``inputs.interleaved_split``), for TSTR and memorization; see
``EvaluationResult.notes``. Held-out windows should come from the same market regimes as the training
windows: a held-out period calmer or wilder than the training period makes synthetic windows that mimic the
training data look closer to it than new real data is (a false memorization alarm).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketsynth import splits
from marketsynth.errors import ConfigError, DataError
from marketsynth.evaluation import classifiers, diagnosis, explain
from marketsynth.evaluation.fidelity import (
    candle_validity_rate,
    coverage,
    expected_coverage,
    histogram_kl,
    return_statistics,
)
from marketsynth.evaluation.inputs import (
    FEATURE_NAMES,
    RETURN_COLUMN,
    FeatureScaler,
    MinMaxScaler,
    as_windows,
    candle_windows,
    interleaved_split,
    subsample,
    window_features,
)
from marketsynth.evaluation.privacy import memorization
from marketsynth.evaluation.protocols import PROTOCOLS, Protocol, resolve_protocol  # noqa: F401 - PROTOCOLS re-exported
from marketsynth.evaluation.records import EvaluationResult, MetricRecord
from marketsynth.evaluation.stylized import (
    AGGREGATION_SCALES,
    aggregational_gaussianity,
    stylized_profile,
)
from marketsynth.progress import Progress, or_silent
from marketsynth.representation import OHLCV
from marketsynth.timeframes import Timeframe

_RETURN_SAMPLE = 20_000  # returns per set kept in ``curves`` for histograms


@dataclass(frozen=True)
class Discriminator:
    """A post-hoc discriminator: ``hidden`` None is the paper's size; ``columns`` names the features it sees
    (default protocol: gap, ret, upper, lower, volume; timegan: open, high, low, close, volume)."""

    name: str
    hidden: int | None = None
    columns: tuple[str, ...] | None = None


DEFAULT_DISCRIMINATORS = (Discriminator("all bar features"),)
BENCHMARK_DISCRIMINATORS = (
    Discriminator("all bar features"),
    Discriminator("all bar features, wide GRU (hidden 32)", hidden=32),
    Discriminator("close returns only", columns=("ret",)),
)


def evaluate(
    real_windows,
    synthetic_windows,
    *,
    train_windows=None,
    seq_len: int,
    repeats: int = 3,
    protocol: str | Protocol = "default",
    seed: int = 0,
    progress: Progress | None = None,
    discriminators: Sequence[Discriminator] = DEFAULT_DISCRIMINATORS,
    tstr_targets: Sequence[str] = classifiers.TSTR_TARGETS,
    max_windows: int | None = 5000,
    diagnose: bool | dict = False,
) -> EvaluationResult:
    """All metrics of real vs synthetic candle windows ``[n, seq_len, 5]``; deterministic for a ``seed``.

    Each of the three sets may also be a DataFrame: a long frame of samples (``sample_id, timestep, open, ...``,
    see ``inputs.windows_from_long_frame``) or a bars frame (``time, open, ...``), cut into stride-1 windows
    of ``seq_len`` bars that never span a gap.

    ``max_windows`` caps how many windows of each set the classifiers and nearest-neighbour metrics use (a
    seeded random subset); return statistics and stylized facts use every window.

    ``diagnose`` adds ``diagnosis.diagnose`` (what gives the synthetic windows away) as ``result.diagnosis``, with
    the same seed, repeats, protocol and window cap; a dict (even empty) instead of True turns it on with more of
    its keyword arguments (``real_phase``, ``synthetic_phase``, ``bars_per_day``, ``hidden``; see
    ``diagnosis.real_clock``).
    """
    started = time.perf_counter()
    proto = resolve_protocol(protocol)
    if repeats < 1:
        raise ConfigError(f"repeats must be at least 1, got {repeats}")
    real = as_windows(real_windows, "real windows", seq_len)
    synthetic = as_windows(synthetic_windows, "synthetic windows", seq_len)
    train = None if train_windows is None else as_windows(train_windows, "training windows", seq_len)
    columns = OHLCV if proto.minmax_raw else FEATURE_NAMES
    for spec in discriminators:
        _column_indices(spec.columns, columns, proto.name)
    total = 6 + repeats * (len(discriminators) + 2)
    progress = or_silent(progress)
    progress.start("evaluate", total, "")
    first = [True]

    def step(what: str) -> None:  # ``what`` is starting; the step before it is done
        progress.advance("evaluate", 0 if first[0] else 1, what)
        first[0] = False

    rng = np.random.default_rng(seed)
    notes: list[str] = []
    real_f, synthetic_f = window_features(real), window_features(synthetic)
    train_f = None if train is None else window_features(train)
    scale = FeatureScaler(real_f if train_f is None else np.concatenate([train_f, real_f]))
    reference_f, heldout_f = _reference_split(real_f, train_f, notes)
    real_r, synthetic_r = real_f[..., RETURN_COLUMN], synthetic_f[..., RETURN_COLUMN]
    if seq_len < max(AGGREGATION_SCALES):
        notes.append(f"windows of {seq_len} bars cannot show returns aggregated over more than {seq_len} bars")

    step("return statistics")
    records = _return_records(real_r, synthetic_r)
    curves: dict = {"returns": {"real": subsample(real_r.ravel(), _RETURN_SAMPLE, rng),
                                "synthetic": subsample(synthetic_r.ravel(), _RETURN_SAMPLE, rng)}}
    step("stylized facts")
    profiles = {"real": stylized_profile(real_r), "synthetic": stylized_profile(synthetic_r)}
    curves["stylized"] = profiles
    aggregation = aggregational_gaussianity(real_r, synthetic_r)
    curves["aggregation"] = aggregation
    records += explain.stylized_records(profiles, aggregation, seq_len)

    real_sub, synthetic_sub = subsample(real_f, max_windows, rng), subsample(synthetic_f, max_windows, rng)
    step("coverage")
    value = coverage(scale(real_sub), scale(synthetic_sub))
    records.append(explain.coverage_record(value, expected_coverage(len(real_sub), len(synthetic_sub))))

    heldout_sub = subsample(heldout_f, max_windows, rng)
    step("memorization")
    memo = memorization(scale(synthetic_sub), scale(reference_f), scale(heldout_sub))
    curves["memorization"] = {"synthetic": memo.synthetic_closeness, "heldout": memo.heldout_closeness,
                              "threshold": memo.threshold, "relative": memo.relative}
    records.append(explain.memorization_record(memo))

    step("train on synthetic, test on real")
    reference_sub = subsample(reference_f, max_windows, rng)
    for target in tstr_targets:
        scores = classifiers.tstr(synthetic_sub, reference_sub, heldout_sub, target=target, seed=seed)
        records.append(explain.tstr_record(scores))

    if proto.minmax_raw:
        minmax = MinMaxScaler(real if train is None else np.concatenate([train, real]))
        real_cls = minmax(subsample(real, max_windows, np.random.default_rng(seed)))
        synthetic_cls = minmax(subsample(synthetic, max_windows, np.random.default_rng(seed)))
        predict_train_real, predict_test = real_cls, real_cls
    else:
        real_cls, synthetic_cls = scale(real_sub), scale(synthetic_sub)
        predict_train_real, predict_test = scale(reference_sub), scale(heldout_sub)
    for spec in discriminators:
        indices = _column_indices(spec.columns, columns, proto.name)

        def discriminate(run_seed: int, spec=spec, indices=indices) -> float:
            step(f"discriminative score ({spec.name}), run {run_seed - seed + 1}/{repeats}")
            return proto.discriminative_score(real_cls, synthetic_cls, hidden=spec.hidden, columns=indices,
                                              seed=run_seed)

        records.append(explain.discriminative_record(spec.name, classifiers.repeat(discriminate, repeats, seed),
                                                     spec.hidden or classifiers.paper_hidden(len(indices))))

    def predict(train_set: np.ndarray, label: str) -> Callable[[int], float]:
        def run(run_seed: int) -> float:
            step(f"predictive score ({label}), run {run_seed - seed + 1}/{repeats}")
            return classifiers.predictive_score(
                train_set, predict_test, iterations=proto.predictive_iterations, batch_size=proto.batch_size,
                lr=proto.lr,
                input_columns=range(len(columns)) if proto.predict_from_all_columns else None,
                sigmoid_output=proto.minmax_raw, patience=proto.patience, check_every=proto.check_every,
                seed=run_seed)
        return run

    records.append(explain.predictive_record(
        classifiers.repeat(predict(predict_train_real, "trained on real"), repeats, seed),
        classifiers.repeat(predict(synthetic_cls, "trained on synthetic"), repeats, seed),
        target=columns[-1], from_all=proto.predict_from_all_columns))

    step("candle validity")
    records.append(explain.validity_record(candle_validity_rate(real), candle_validity_rate(synthetic)))
    records.sort(key=lambda record: explain.GROUPS.index(record.group))  # stable: keeps the order within groups
    diagnosed = None
    if diagnose or isinstance(diagnose, dict):
        options = {"seed": seed, "repeats": repeats, "protocol": proto, "max_windows": max_windows,
                   "synthetic_phase": diagnosis.frame_phases(synthetic_windows),
                   **(diagnose if isinstance(diagnose, dict) else {})}
        diagnosed = diagnosis.diagnose(real, synthetic, seq_len=seq_len, progress=progress, **options)
    return EvaluationResult(records=records, protocol=proto.name, seq_len=seq_len, n_real=len(real),
                            n_synthetic=len(synthetic), n_train=None if train is None else len(train),
                            seed=seed, seconds=time.perf_counter() - started, notes=notes, curves=curves,
                            diagnosis=diagnosed)


def real_vs_real_floor(
    bars: pd.DataFrame,
    chunk_bars: int = 240,
    *,
    phase: int = 0,
    seq_len: int = 24,
    stride: int = 1,
    timeframe: str | Timeframe | None = None,
    **evaluate_kwargs,
) -> EvaluationResult:
    """The best score a generator can hope for: real data evaluated against other real data.

    The bars are cut into consecutive chunks of ``chunk_bars`` (240 = 10 days of 1h bars); windows inside
    even chunks play "real", windows inside odd chunks play "synthetic" (windows spanning two chunks are
    dropped). Chunks long enough to hold different market regimes but alternating so both sides see the whole
    period. ``phase`` shifts the chunk boundaries by that many bars, so floors repeated with other phases
    (and seeds) show how much the floor itself varies. ``evaluate_kwargs`` go to ``evaluate`` (repeats,
    protocol, seed, ...).
    """
    if chunk_bars < seq_len:
        raise ConfigError(f"chunk_bars ({chunk_bars}) must be at least seq_len ({seq_len})")
    windows, starts = candle_windows(bars, seq_len, stride, timeframe, return_starts=True)
    shift = phase % chunk_bars
    held = splits.interleaved(len(bars) + shift, chunk_bars, 0.5)[shift:]  # the odd chunks
    inside = (starts + shift) // chunk_bars == (starts + seq_len - 1 + shift) // chunk_bars
    odd = inside & held[starts]
    even = inside & ~held[starts]
    if even.sum() < 2 or odd.sum() < 2:
        raise DataError(f"{len(bars)} bars are too few for a real-vs-real floor with chunks of {chunk_bars}")
    return evaluate(windows[even], windows[odd], seq_len=seq_len, **evaluate_kwargs)


def _column_indices(names: Sequence[str] | None, columns: Sequence[str], protocol: str) -> list[int]:
    if names is None:
        return list(range(len(columns)))
    unknown = [n for n in names if n not in columns]
    if unknown:
        raise ConfigError(f"discriminator columns {unknown} do not exist in protocol '{protocol}'; "
                          f"use some of {', '.join(columns)}")
    return [columns.index(n) for n in names]


def _reference_split(real_f: np.ndarray, train_f: np.ndarray | None, notes: list[str]):
    """(windows the model trained on, real windows it never saw) for TSTR and memorization."""
    if train_f is not None:
        return train_f, real_f
    reference, heldout = interleaved_split(len(real_f), real_f.shape[1])
    notes.append(
        "no training windows given: 70% of the real windows (interleaved blocks) stand in for the model's "
        "training data and 30% are held out for TSTR and memorization; if the model trained on all of them, "
        "copying of the held-out part goes unnoticed"
    )
    return real_f[reference], real_f[heldout]


def _return_records(real_r: np.ndarray, synthetic_r: np.ndarray) -> list[MetricRecord]:
    real_stats, synthetic_stats = return_statistics(real_r), return_statistics(synthetic_r)
    return explain.return_records(real_stats, synthetic_stats, histogram_kl(real_r, synthetic_r))
