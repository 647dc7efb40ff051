"""What gives synthetic windows away: ``diagnose`` looks at one property at a time and ranks the differences.

``evaluate`` says *whether* a discriminator tells synthetic windows from real ones; ``diagnose`` says *why*:

* discriminators that see one feature only (gap, close return, upper wick, lower wick, relative volume), with
  the classifier settings of ``evaluate``'s protocol on the same standardised window features;
* the all-features discriminator on windows whose bars are shuffled in time (each window its own random order,
  both sets alike) next to the one on bars in order: when shuffling leaves the score as high, the give-away is in
  the bars themselves (marginals, the joint of a bar's features); when it drops, it is in how bars follow each other;
* exact atoms, marginals, correlations within bars, autocorrelations over lags and the daily cycle, real vs
  synthetic (every per-bar statistic uses bars 2..L of each window: the first has no previous close in it);
* ``Diagnosis.findings``: one sentence per property with both numbers, ranked by ``severity``, the distance
  divided by the distance that starts to be noticeable (``NOTICEABLE``): 1 is just noticeable.

=================  ==========================================================================  ===========
topic              distance                                                                    noticeable
=================  ==========================================================================  ===========
discriminator      the score |accuracy - 0.5| (identical data: about 0)                        0.05
time order         score on bars in order minus score on shuffled bars                         0.05
atoms              |share_s - share_r| of bars with an exact atom (e.g. open = previous close)  0.02
marginals          largest |difference| of mean, std, 1 % and 99 % quantile, in real stds     0.10
volume level       |difference| of the mean log(1 + volume) of windows, in real windows' std   0.25
correlation        |corr_s - corr_r| within bars                                               0.05
autocorrelation    mean over lags of |ACF_s - ACF_r|                                           0.03
daily cycle        1 - correlation of the real and synthetic profiles over the day             0.10
=================  ==========================================================================  ===========
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from marketsynth import timeframes
from marketsynth.errors import ConfigError, DataError
from marketsynth.evaluation import classifiers
from marketsynth.evaluation.formatting import number
from marketsynth.evaluation.inputs import (
    FEATURE_NAMES,
    RETURN_COLUMN,
    FeatureScaler,
    as_windows,
    candle_windows,
    subsample,
    window_features,
)
from marketsynth.evaluation.protocols import Protocol, resolve_protocol
from marketsynth.evaluation.records import plain_json
from marketsynth.evaluation.stylized import acf
from marketsynth.progress import Progress, or_silent

NOTICEABLE = {"discriminator": 0.05, "time order": 0.05, "atoms": 0.02, "marginals": 0.10, "volume level": 0.25,
              "correlation": 0.05, "autocorrelation": 0.03, "daily cycle": 0.10}
FEATURE_LABELS = {"gap": "gaps (open vs previous close)", "ret": "close returns", "upper": "upper wicks",
                  "lower": "lower wicks", "volume": "relative volume"}
ATOM_LABELS = {"gap": "open = previous close", "upper": "no upper wick", "lower": "no lower wick",
               "volume": "zero volume"}
CORRELATION_LABELS = {"volume_range": ("relative volume", "log range"), "body_wicks": ("|body|", "upper + lower wicks"),
                      "abs_return_volume": ("|return|", "relative volume")}
STATISTICS = {"mean": "mean", "std": "std", "q01": "1% quantile", "q99": "99% quantile"}
_GAP, _UPPER, _LOWER, _VOLUME = (FEATURE_NAMES.index(n) for n in ("gap", "upper", "lower", "volume"))


@dataclass
class Finding:
    """One property, real vs synthetic: ``severity`` = distance / ``NOTICEABLE[topic]`` (1: just noticeable)."""

    topic: str
    text: str
    real: float | None
    synthetic: float | None
    severity: float

    @property
    def verdict(self) -> str:
        """``good`` below 1 (not noticeable), ``fair`` below 3, else ``poor``: the report's badge colours."""
        return "good" if self.severity < 1 else "fair" if self.severity < 3 else "poor"


@dataclass
class Diagnosis:
    """What ``diagnose`` measured (see the module doc); ``findings`` are ranked, the strongest give-away first."""

    seq_len: int
    n_real: int
    n_synthetic: int
    n_classified: int  # windows per set the discriminators used
    protocol: str
    seed: int
    repeats: int
    seconds: float
    discriminators: dict[str, dict]  # feature -> {"mean", "std", "runs"}
    time_order: dict[str, dict]  # "in order" / "shuffled" -> {"mean", "std", "runs"}
    atoms: dict[str, dict]  # ATOM_LABELS key -> {"real", "synthetic"} shares of bars
    marginals: dict[str, dict]  # feature -> statistic -> {"real", "synthetic", "difference" (real stds)}
    volume_level: dict  # {"real", "synthetic", "real_std", "difference"}
    correlations: dict[str, dict]  # CORRELATION_LABELS key -> {"real", "synthetic"}
    acf: dict  # {"lags", "abs_ret": {"real", "synthetic"}, "volume": {...}}
    daily: dict  # {"bars_per_day", "real", "synthetic": {"volume", "abs_ret"} or None, "correlation", "note"}
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON values (NaN as None); findings carry their verdict."""
        out = plain_json(asdict(self))
        for row, finding in zip(out["findings"], self.findings, strict=True):
            row["verdict"] = finding.verdict
        return out

    def summary_lines(self, limit: int | None = None) -> list[str]:
        """The ranked findings as text lines, ``1. [poor] atoms: ...``."""
        return [f"{i}. [{f.verdict}] {f.topic}: {f.text}" for i, f in enumerate(self.findings[:limit], 1)]


def diagnose(
    real,
    synthetic,
    *,
    seq_len: int,
    seed: int = 0,
    repeats: int = 1,
    protocol: str | Protocol = "default",
    max_windows: int | None = 5000,
    hidden: int | None = None,
    real_phase=None,
    synthetic_phase=None,
    bars_per_day: int | None = None,
    progress: Progress | None = None,
) -> Diagnosis:
    """Which property gives ``synthetic`` windows away against ``real`` ones (inputs as ``evaluate`` takes them).

    The discriminators train with ``protocol``'s settings (iterations, batch, learning rate, early stopping) on
    window features standardised with the real data's statistics, ``repeats`` runs each, on at most
    ``max_windows`` windows per set; ``hidden`` is their GRU width (None: the paper's, half the features seen).
    ``real_phase`` / ``synthetic_phase``: each window's first bar's position in the day (0 .. ``bars_per_day`` - 1,
    see ``daily_phases``); a bars frame passed as ``real`` gives its own. Without them the daily cycle is not
    compared and ``daily["note"]`` says so. Generated samples with a ``bar_of_day`` column (models with a daily
    cycle) give their own ``synthetic_phase``.
    """
    started = time.perf_counter()
    proto = resolve_protocol(protocol)
    if repeats < 1:
        raise ConfigError(f"repeats must be at least 1, got {repeats}")
    if real_phase is None and isinstance(real, pd.DataFrame) and "time" in real.columns:
        phases, per_day = daily_phases(real, seq_len)
        if per_day:
            real_phase, bars_per_day = phases, bars_per_day or per_day
    if synthetic_phase is None:
        synthetic_phase = frame_phases(synthetic)
    real_w, synthetic_w = as_windows(real, "real windows", seq_len), as_windows(synthetic, "synthetic windows", seq_len)
    progress = or_silent(progress)
    progress.start("diagnose", 1 + 7 * repeats, "statistics")
    notes: list[str] = []
    if proto.minmax_raw:
        notes.append(f"discriminators use the {proto.name} protocol's training settings on standardised window "
                     "features (one feature at a time needs the features, not raw columns)")
    real_f, synthetic_f = window_features(real_w), window_features(synthetic_w)
    daily = _daily(real_w, synthetic_w, real_phase, synthetic_phase, bars_per_day)
    stats = {"atoms": {k: {"real": r, "synthetic": s} for (k, r), s in
                       zip(exact_atoms(real_w).items(), exact_atoms(synthetic_w).values(), strict=True)},
             "marginals": _marginals(real_f, synthetic_f), "volume_level": _volume_level(real_w, synthetic_w),
             "correlations": {k: {"real": r, "synthetic": s} for (k, r), s in
                              zip(bar_correlations(real_f).items(), bar_correlations(synthetic_f).values(),
                                  strict=True)},
             "acf": _acfs(real_f, synthetic_f), "daily": daily}
    progress.advance("diagnose", 1, "discriminators")

    rng = np.random.default_rng(seed)
    scale = FeatureScaler(real_f)
    real_x, synthetic_x = scale(subsample(real_f, max_windows, rng)), scale(subsample(synthetic_f, max_windows, rng))

    def score(name: str, real_set, synthetic_set, columns=None) -> dict:
        def run(run_seed: int) -> float:
            progress.advance("diagnose", 0, f"discriminator: {name}, run {run_seed - seed + 1}/{repeats}")
            value = proto.discriminative_score(real_set, synthetic_set, hidden=hidden, columns=columns,
                                               seed=run_seed)
            progress.advance("diagnose", 1)
            return value
        return classifiers.repeat(run, repeats, seed)

    discriminators = {name: score(FEATURE_LABELS[name], real_x, synthetic_x, [i]) for i, name in
                      enumerate(FEATURE_NAMES)}
    time_order = {"in order": score("all features", real_x, synthetic_x),
                  "shuffled": score("all features, bars shuffled in time", shuffle_time(real_x, rng),
                                    shuffle_time(synthetic_x, rng))}
    result = Diagnosis(seq_len=seq_len, n_real=len(real_w), n_synthetic=len(synthetic_w),
                       n_classified=min(len(real_x), len(synthetic_x)), protocol=proto.name, seed=seed,
                       repeats=repeats, seconds=0.0, discriminators=discriminators, time_order=time_order,
                       notes=notes, **stats)
    result.findings = rank_findings(result)
    result.seconds = time.perf_counter() - started
    progress.finish("diagnose", result.findings[0].text if result.findings else "done")
    return result


def daily_phases(bars: pd.DataFrame, seq_len: int,
                 timeframe: str | timeframes.Timeframe | None = None) -> tuple[np.ndarray, int]:
    """(position in the UTC day of each window's first bar, bars per day) for the windows ``candle_windows(bars,
    seq_len, 1, timeframe)`` cuts; bars per day is 0 and the positions all 0 for bars that do not divide a day."""
    _, starts = candle_windows(bars, seq_len, 1, timeframe, return_starts=True)
    per_day = timeframes.bars_per_day(bars["time"], timeframe)
    if not per_day:
        return np.zeros(len(starts), dtype=np.int64), 0
    return timeframes.position_in_day(bars["time"].to_numpy()[starts], per_day), per_day


def frame_phases(samples) -> np.ndarray | None:
    """Each window's first-bar position in the day from generated samples (a long frame whose ``bar_of_day``
    column ``generation`` writes for models with a daily cycle), in ``sample_id`` order; None otherwise."""
    if not isinstance(samples, pd.DataFrame) or not {"sample_id", "timestep", "bar_of_day"} <= set(samples.columns):
        return None
    first = samples.sort_values(["sample_id", "timestep"]).groupby("sample_id", sort=True)["bar_of_day"].first()
    return first.to_numpy(dtype=np.int64)


def real_clock(bars: pd.DataFrame, seq_len: int, timeframe: str | timeframes.Timeframe | None = None) -> dict:
    """``diagnose`` keyword arguments for real windows cut from ``bars`` as ``daily_phases`` says: their positions
    in the day and the bars per day, or nothing for bars that do not divide a day."""
    phases, per_day = daily_phases(bars, seq_len, timeframe)
    return {"real_phase": phases, "bars_per_day": per_day} if per_day else {}


def shuffle_time(windows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``windows [n, L, F]`` with each window's time steps in its own random order (features of a bar kept together)."""
    order = np.argsort(rng.random(windows.shape[:2]), axis=1)
    return np.take_along_axis(windows, order[..., None], axis=1)


def exact_atoms(candles: np.ndarray) -> dict[str, float]:
    """Shares of bars 2..L with open exactly the previous close, no upper wick, no lower wick, zero volume."""
    bars = candles[:, 1:]
    o, h, low, c, v = np.moveaxis(bars, -1, 0)
    return {"gap": float(np.mean(o == candles[:, :-1, 3])), "upper": float(np.mean(h == np.maximum(o, c))),
            "lower": float(np.mean(low == np.minimum(o, c))), "volume": float(np.mean(v == 0))}


def bar_correlations(features: np.ndarray) -> dict[str, float | None]:
    """Correlations within bars 2..L (``CORRELATION_LABELS``); None where a side is constant."""
    gap, ret, upper, lower, volume = np.moveaxis(features[:, 1:].reshape(-1, features.shape[-1]), -1, 0)
    body, wicks = np.abs(ret - gap), upper + lower
    return {"volume_range": _corr(volume, wicks + body), "body_wicks": _corr(body, wicks),
            "abs_return_volume": _corr(np.abs(ret), volume)}


def daily_profile(candles: np.ndarray, phase, per_day: int) -> dict[str, np.ndarray]:
    """Mean log(1 + volume) and mean |close return| at each position in the day (NaN where no bar falls)."""
    position = ((np.asarray(phase, dtype=np.int64)[:, None] + np.arange(candles.shape[1])) % per_day).ravel()
    counts = np.bincount(position, minlength=per_day).astype(float)
    counts[counts == 0] = np.nan
    log_volume = np.log1p(np.maximum(candles[..., 4], 0.0)).ravel()
    abs_ret = np.abs(window_features(candles)[..., RETURN_COLUMN]).ravel()
    return {name: np.bincount(position, weights=values, minlength=per_day) / counts
            for name, values in (("volume", log_volume), ("abs_ret", abs_ret))}


# ---- the pieces of a Diagnosis ----------------------------------------------------------------------------------
def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _moments(x: np.ndarray) -> dict[str, float]:
    return {"mean": float(x.mean()), "std": float(x.std()), "q01": float(np.quantile(x, 0.01)),
            "q99": float(np.quantile(x, 0.99))}


def _marginals(real_f: np.ndarray, synthetic_f: np.ndarray) -> dict[str, dict]:
    out = {}
    for i, name in enumerate(FEATURE_NAMES):
        real, synthetic = _moments(real_f[:, 1:, i].ravel()), _moments(synthetic_f[:, 1:, i].ravel())
        unit = real["std"] or 1.0
        out[name] = {k: {"real": real[k], "synthetic": synthetic[k], "difference": (synthetic[k] - real[k]) / unit}
                     for k in STATISTICS}
    return out


def _volume_level(real: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    def level(candles):
        return np.log1p(np.maximum(candles[..., 4], 0.0)).mean(axis=1)

    r, s = level(real), level(synthetic)
    unit = float(r.std()) or 1.0
    return {"real": float(r.mean()), "synthetic": float(s.mean()), "real_std": float(r.std()),
            "difference": float((s.mean() - r.mean()) / unit)}


def _acfs(real_f: np.ndarray, synthetic_f: np.ndarray) -> dict:
    """ACFs over bars 2..L: the first bar's return is open to close (no previous close in the window), which
    after an overnight gap is smaller than a close-to-close one and would bend the lags it takes part in."""
    lags = real_f.shape[1] - 2
    out: dict = {"lags": np.arange(1, lags + 1)}
    for key, pick in (("abs_ret", lambda f: np.abs(f[:, 1:, RETURN_COLUMN])), ("volume", lambda f: f[:, 1:, _VOLUME])):
        out[key] = {"real": acf(pick(real_f), lags), "synthetic": acf(pick(synthetic_f), lags)}
    return out


def _daily(real, synthetic, real_phase, synthetic_phase, per_day) -> dict:
    out: dict = {"bars_per_day": per_day or None, "real": None, "synthetic": None, "correlation": {}, "note": None}
    if real_phase is None and synthetic_phase is None:
        out["note"] = "not compared: the windows' positions in the day were not given"
        return out
    if not per_day:
        raise ConfigError("daily phases need bars_per_day (24 for 1h bars; see diagnosis.daily_phases)")
    for side, candles, phase in (("real", real, real_phase), ("synthetic", synthetic, synthetic_phase)):
        if phase is None:
            continue
        phase = np.asarray(phase)
        if phase.shape != (len(candles),) or (phase < 0).any() or (phase >= per_day).any():
            raise DataError(f"{side}_phase needs one position in [0, {per_day}) per {side} window "
                            f"({len(candles)}), got shape {phase.shape}")
        out[side] = daily_profile(candles, phase, per_day)
    if out["synthetic"] is None:
        out["note"] = ("shown for the real windows only: the synthetic windows carry no clock (their positions in "
                       "the day were not given)")
    elif out["real"] is None:
        out["note"] = "shown for the synthetic windows only: the real windows' positions in the day were not given"
    elif out["real"] is not None:
        out["correlation"] = {k: _corr(out["real"][k], out["synthetic"][k]) for k in ("volume", "abs_ret")}
    return out


# ---- ranking ----------------------------------------------------------------------------------------------------
def rank_findings(d: Diagnosis) -> list[Finding]:
    """One finding per property, the most noticeable difference first (see the module doc's table)."""
    out: list[Finding] = []

    def add(topic: str, text: str, real, synthetic, distance) -> None:
        severity = 0.0 if distance is None or not np.isfinite(distance) else abs(distance) / NOTICEABLE[topic]
        out.append(Finding(topic, text, real, synthetic, float(severity)))

    for name, result in d.discriminators.items():
        add("discriminator", f"on {FEATURE_LABELS[name]} alone scores {result['mean']:.3f} (identical data: ~0)",
            None, result["mean"], result["mean"])
    ordered, shuffled = d.time_order["in order"]["mean"], d.time_order["shuffled"]["mean"]
    temporal = ordered - shuffled >= NOTICEABLE["time order"]
    add("time order", f"all features score {ordered:.3f} with bars in order vs {shuffled:.3f} with each window's "
                      "bars shuffled: " + ("the give-away is how bars follow each other" if temporal else
                                           "the order of the bars adds little"),
        ordered, shuffled, max(0.0, ordered - shuffled))
    add("discriminator", f"on all features with bars shuffled in time scores {shuffled:.3f} (what single bars "
                         "give away, order aside)", None, shuffled, shuffled)
    for name, shares in d.atoms.items():
        add("atoms", f"{ATOM_LABELS[name]} in {shares['real']:.1%} of real bars vs {shares['synthetic']:.1%} of "
                     "synthetic", shares["real"], shares["synthetic"], shares["synthetic"] - shares["real"])
    for name, stats in d.marginals.items():
        key = max(STATISTICS, key=lambda k: abs(stats[k]["difference"]))
        s = stats[key]
        add("marginals", f"{FEATURE_LABELS[name]}: {STATISTICS[key]} {number(s['real'])} real vs "
                         f"{number(s['synthetic'])} synthetic ({s['difference']:+.2f} real std)",
            s["real"], s["synthetic"], s["difference"])
    level = d.volume_level
    add("volume level", f"mean log(1 + volume) of a window {level['real']:.2f} real vs {level['synthetic']:.2f} "
                        f"synthetic ({level['difference']:+.2f} std of the real windows' levels)",
        level["real"], level["synthetic"], level["difference"])
    for name, pair in d.correlations.items():
        a, b = CORRELATION_LABELS[name]
        r, s = pair["real"], pair["synthetic"]
        add("correlation", f"corr({a}, {b}) within bars {_text(r)} real vs {_text(s)} synthetic", r, s,
            None if r is None or s is None else s - r)
    lags = len(d.acf["lags"])
    for key, label in (("abs_ret", "|returns|"), ("volume", "relative volume")) if lags else ():
        r, s = np.asarray(d.acf[key]["real"]), np.asarray(d.acf[key]["synthetic"])
        add("autocorrelation", f"of {label}: lag 1 {r[0]:.2f} real vs {s[0]:.2f} synthetic, mean difference over "
                               f"lags 1-{lags} {np.mean(np.abs(s - r)):.3f}", float(r[0]), float(s[0]),
            float(np.mean(np.abs(s - r))))
    for key, label in (("volume", "volume"), ("abs_ret", "|returns|")):
        correlation = d.daily["correlation"].get(key)
        if correlation is not None:
            r, s = (float(np.nanmax(p) - np.nanmin(p)) for p in (d.daily["real"][key], d.daily["synthetic"][key]))
            add("daily cycle", f"of {label}: profiles over the day correlate {correlation:.2f} (1 = same shape); "
                               f"range over the day {r:.3g} real vs {s:.3g} synthetic", r, s, 1.0 - correlation)
    return sorted(out, key=lambda f: -f.severity)


def _text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
