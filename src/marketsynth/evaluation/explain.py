"""Metric values -> records with a verdict (``records.VERDICT_RULES``) and one plain-language sentence.

The sentences are written for someone who trades but does not code: what was compared, how far apart the two
data sets are, and what counts as good.
"""

from __future__ import annotations

import math

from marketsynth.evaluation.privacy import Memorization
from marketsynth.evaluation.records import MetricRecord, grade, limits_text

RETURNS = "Return statistics"
STYLIZED = "Stylized facts"
REALISM = "Realism (post-hoc classifiers)"
USEFULNESS = "Usefulness (train on synthetic, test on real)"
PRIVACY = "Privacy"
VALIDITY = "Candle validity"
GROUPS = (RETURNS, STYLIZED, REALISM, USEFULNESS, PRIVACY, VALIDITY)  # the order records are listed in


def _ratio_gap(synthetic: float, real: float) -> float:
    return abs(synthetic / real - 1) if real else float("inf") if synthetic else 0.0


def return_records(real: dict, synthetic: dict, kl: float) -> list[MetricRecord]:
    """Mean, std, kurtosis, lag-1 autocorrelation and KL divergence of per-bar close returns."""
    std = real["std"] or 1.0
    mean_gap = abs(synthetic["mean"] - real["mean"]) / std
    std_gap = _ratio_gap(synthetic["std"], real["std"])
    kurt_real, kurt_synthetic = real["excess_kurtosis"], synthetic["excess_kurtosis"]
    kurt_factor = (kurt_synthetic + 3) / (kurt_real + 3) if kurt_real > -3 and kurt_synthetic > -3 else 1.0
    kurt_gap = abs(math.log(kurt_factor)) if kurt_factor > 0 else float("inf")
    lag_gap = abs(synthetic["lag1_autocorrelation"] - real["lag1_autocorrelation"])
    more = "more" if synthetic["std"] >= real["std"] else "less"
    tails = "heavier" if kurt_synthetic >= kurt_real else "lighter"
    return [
        MetricRecord(
            RETURNS, "mean return", real["mean"], synthetic["mean"], mean_gap, "closer", grade(mean_gap, "mean"),
            f"The average move per bar is {synthetic['mean']:+.4%} in synthetic data and {real['mean']:+.4%} in "
            f"real data, {mean_gap:.3f} typical moves apart ({limits_text('mean')}).",
        ),
        MetricRecord(
            RETURNS, "volatility (std of returns)", real["std"], synthetic["std"], std_gap, "closer",
            grade(std_gap, "std"),
            f"Synthetic prices move {std_gap:.0%} {more} than real ones on a typical bar "
            f"({synthetic['std']:.3%} vs {real['std']:.3%}; {limits_text('std', percent=True)}).",
        ),
        MetricRecord(
            RETURNS, "kurtosis (excess)", kurt_real, kurt_synthetic, kurt_gap, "closer",
            grade(kurt_gap, "kurtosis"),
            f"Extreme moves are {tails} in synthetic data: excess kurtosis {kurt_synthetic:.1f} vs {kurt_real:.1f} "
            f"for real data (0 is a bell curve; good within a factor 1.5, fair within 3 — a single crash can "
            f"double it, so the tail index is the steadier check).",
        ),
        MetricRecord(
            RETURNS, "lag-1 autocorrelation", real["lag1_autocorrelation"], synthetic["lag1_autocorrelation"],
            lag_gap, "closer", grade(lag_gap, "lag1"),
            f"How much one bar's move hints at the next: {synthetic['lag1_autocorrelation']:+.3f} in synthetic vs "
            f"{real['lag1_autocorrelation']:+.3f} in real data ({limits_text('lag1')}).",
        ),
        MetricRecord(
            RETURNS, "KL divergence of returns", None, kl, kl, "lower", grade(kl, "kl"),
            f"The histograms of per-bar moves differ by {kl:.3f} (KL divergence; 0 means the same shape; "
            f"{limits_text('kl')}).",
        ),
    ]


def coverage_record(value: float, expected: float) -> MetricRecord:
    gap = max(0.0, 1 - value / expected) if expected > 0 else 0.0
    return MetricRecord(
        RETURNS, "coverage (diversity)", expected, value, gap, "higher", grade(gap, "coverage"),
        f"Synthetic windows reach {value:.0%} of the neighbourhoods of real windows, where a second real sample "
        f"would reach about {expected:.0%}; low values mean the generator keeps repeating a few patterns.",
        {"k": 5},
    )


def stylized_records(profiles: dict, aggregation: list[dict], seq_len: int) -> list[MetricRecord]:
    """Heavy tails (Hill), volatility clustering, no linear autocorrelation, leverage, aggregation."""
    real, synthetic = profiles["real"], profiles["synthetic"]
    lags = int(real["lags"][-1])
    records = []
    hill_real, hill_synthetic = real["hill_tail_index"], synthetic["hill_tail_index"]
    if hill_real is None or hill_synthetic is None:
        records.append(MetricRecord(
            STYLIZED, "tail index (Hill)", hill_real, hill_synthetic, None, "closer", "n/a",
            "The tail index cannot be estimated: too few non-zero returns."))
    else:
        gap = _ratio_gap(hill_synthetic, hill_real)
        records.append(MetricRecord(
            STYLIZED, "tail index (Hill)", hill_real, hill_synthetic, gap, "closer", grade(gap, "hill"),
            f"How extreme the largest 5% of moves are (smaller = wilder crashes and spikes): {hill_synthetic:.2f} "
            f"for synthetic vs {hill_real:.2f} for real data ({limits_text('hill', percent=True)}).",
            {"tail_fraction": 0.05}))
    curves = (
        ("volatility clustering", "acf_abs", "volatility_clustering",
         "Calm and wild periods come in runs: the autocorrelation of move sizes averages {s:.3f} in synthetic "
         "vs {r:.3f} in real data over lags 1-{lags} (average gap {d:.3f}; {limits})."),
        ("linear autocorrelation", "acf", "linear_acf",
         "Past moves should hardly predict the direction of future ones: average autocorrelation {s:+.3f} in "
         "synthetic vs {r:+.3f} in real data over lags 1-{lags} (average gap {d:.3f}; {limits})."),
        ("leverage effect", "leverage", "leverage",
         "In real markets falls tend to be followed by bigger moves (negative values): average correlation "
         "{s:+.3f} in synthetic vs {r:+.3f} in real data over lags 1-{lags} (average gap {d:.3f}; {limits})."),
    )
    for name, key, rule, text in curves:
        r, s = float(real[key].mean()), float(synthetic[key].mean())
        d = float(abs(real[key] - synthetic[key]).mean())
        records.append(MetricRecord(
            STYLIZED, name, r, s, d, "closer", grade(d, rule),
            text.format(s=s, r=r, d=d, lags=lags, limits=limits_text(rule)),
            {"lags": lags}))
    for entry in aggregation:
        bars = entry["bars"]
        name = f"aggregational Gaussianity, {bars} bar{'s' if bars > 1 else ''}"
        if entry["distance"] is None:
            records.append(MetricRecord(
                STYLIZED, name, None, None, None, "closer", "n/a",
                f"Not measurable: windows of {seq_len} bars are too short to add up {bars} moves "
                f"(use windows of at least {bars} bars)."))
            continue
        d = entry["distance"]
        records.append(MetricRecord(
            STYLIZED, name, entry["real"], entry["synthetic"], d, "closer", grade(d, "aggregation"),
            f"Moves added up over {bars} bar{'s' if bars > 1 else ''} differ in distribution by {d:.2f} real "
            f"standard deviations ({limits_text('aggregation')}); their excess kurtosis is "
            f"{entry['synthetic']:.1f} in synthetic vs {entry['real']:.1f} in real data (real markets get "
            f"closer to a bell curve over longer horizons).",
            {"bars": bars, "measure": "excess kurtosis; distance = Wasserstein / real std"}))
    return records


def discriminative_record(name: str, result: dict, hidden: int) -> MetricRecord:
    score, std, runs = result["mean"], result["std"], len(result["runs"])
    return MetricRecord(
        REALISM, f"discriminative score ({name})", None, score, score, "lower", grade(score, "discriminative"),
        f"A small neural network trying to tell synthetic from real windows was {score:.1%} (± {std:.1%} over "
        f"{runs} run{'s' if runs > 1 else ''}) away from pure guessing; 0% means it cannot tell them apart "
        f"({limits_text('discriminative', percent=True)}).",
        {"std": std, "runs": result["runs"], "hidden": hidden},
    )


def predictive_record(real: dict, synthetic: dict, target: str, from_all: bool) -> MetricRecord:
    excess = max(0.0, synthetic["mean"] / real["mean"] - 1) if real["mean"] > 0 else 0.0
    inputs = "the past bars" if from_all else "the other columns of the past bars"
    return MetricRecord(
        REALISM, "predictive score", real["mean"], synthetic["mean"], excess, "lower",
        grade(excess, "predictive"),
        f"A forecaster of the next bar's {target} from {inputs} trained on synthetic data errs by "
        f"{synthetic['mean']:.4f} on real data, against {real['mean']:.4f} when trained on real data "
        f"({excess:.0%} worse; {limits_text('predictive', percent=True)}).",
        {"std": synthetic["std"], "runs": synthetic["runs"], "real_std": real["std"], "real_runs": real["runs"],
         "target": target},
    )


def tstr_record(scores: dict) -> MetricRecord:
    target, tstr, trtr, ratio, chance = (scores[k] for k in ("target", "tstr", "trtr", "ratio", "chance"))
    gap = max(0.0, 1 - ratio)
    question = "the last bar closes up" if target == "direction" else "the last bar's range is wider than usual"
    caveat = "; real data itself barely beats guessing, so this test says little" if trtr - chance < 0.02 else ""
    text = (f"A model trained on synthetic windows to predict whether {question} is right {tstr:.0%} of the "
            f"time on real data, against {trtr:.0%} when trained on real data (ratio {ratio:.2f}; always "
            f"guessing the commoner answer gives {chance:.0%}{caveat}).")
    return MetricRecord(USEFULNESS, f"TSTR {target}", trtr, tstr, gap, "higher", grade(gap, "tstr"), text,
                        {"ratio": ratio, "chance": chance, "target": target})


def memorization_record(memo: Memorization) -> MetricRecord:
    noise = memo.limit - memo.expected_share  # q + 3 standard errors (limit = 2q + 3 SE)
    verdict = "poor" if memo.flagged else "good" if memo.share_closer <= noise else "fair"
    copies = f" {memo.exact_copies} synthetic windows are exact copies." if memo.exact_copies else ""
    return MetricRecord(
        PRIVACY, "memorization", memo.expected_share, memo.share_closer,
        max(0.0, memo.share_closer - memo.expected_share), "lower", verdict,
        f"{memo.share_closer:.1%} of synthetic windows sit closer to the training data than 95% of genuinely new "
        f"real windows do; about {memo.expected_share:.0%} is normal and above {memo.limit:.1%} suggests the "
        f"model copies its training data.{copies}",
        {"flagged": memo.flagged, "limit": memo.limit, "exact_copies": memo.exact_copies,
         "threshold": memo.threshold},
    )


def validity_record(real_rate: float, synthetic_rate: float) -> MetricRecord:
    gap = 1 - synthetic_rate
    return MetricRecord(
        VALIDITY, "candle validity", real_rate, synthetic_rate, gap, "higher", grade(gap, "validity"),
        f"{synthetic_rate:.2%} of synthetic candles are possible candles (high above open and close, low below "
        f"them, positive prices, volume not negative); real data: {real_rate:.2%}.",
    )
