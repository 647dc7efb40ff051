"""Metric records: one row per metric with a verdict and a plain-language sentence, ready to render.

Every record has ``group, name, real, synthetic, distance, better, verdict, explanation, details``:

* ``real`` / ``synthetic``: the metric on each data set (or, for metrics that only exist as a comparison,
  the reference value for identical data in ``real``; None where there is none).
* ``distance``: how far synthetic is from real, >= 0, lower is better (None when not measurable).
* ``better``: how to read ``synthetic``: ``"closer"`` (to ``real``), ``"lower"`` or ``"higher"``.
* ``verdict``: ``"good"``, ``"fair"`` or ``"poor"`` by the rule in ``VERDICT_RULES`` (``"n/a"`` when the
  metric cannot be measured, e.g. 24-bar aggregation in 12-bar windows).
* ``details``: extras such as the std over repeats, per-run values, the ratio TSTR/TRTR.

Verdict rules (distance thresholds: good if <= the first, fair if <= the second, else poor):

==========================  ==========================================================  ======  ======
metric                      distance                                                    good    fair
==========================  ==========================================================  ======  ======
mean return                 |mean_s - mean_r| / std_r                                   0.02    0.05
volatility (std)            |std_s / std_r - 1|                                         0.10    0.25
kurtosis                    |ln(kurt_s / kurt_r)| (plain kurtosis, normal = 3)          ln 1.5  ln 3
lag-1 autocorrelation       |acf_s - acf_r|                                             0.03    0.08
KL divergence               KL(real || synthetic) in nats                               0.02    0.10
coverage                    1 - coverage / expected coverage for identical data         0.10    0.30
tail index (Hill)           |alpha_s / alpha_r - 1|                                     0.15    0.35
volatility clustering       mean over lags of |ACF(|r|)_s - ACF(|r|)_r|                 0.03    0.08
linear autocorrelation      mean over lags of |ACF(r)_s - ACF(r)_r|                     0.02    0.05
leverage effect             mean over lags of |lev_s - lev_r|                           0.02    0.05
aggregational Gaussianity   Wasserstein distance / std of real aggregated returns       0.10    0.25
discriminative score        |accuracy - 0.5| (the score itself)                         0.05    0.15
predictive score            max(0, MAE_s / MAE_r - 1)                                   0.10    0.30
TSTR                        max(0, 1 - TSTR / TRTR)                                     0.05    0.15
memorization                share closer - 5 %; good within 3 standard errors,          3 SE    flag
                            poor when flagged as copying (see privacy.py)
candle validity             1 - valid share                                             0.001   0.01
==========================  ==========================================================  ======  ======
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marketsynth.data.io import atomic_path

VERDICTS = ("good", "fair", "poor", "n/a")

VERDICT_RULES: dict[str, tuple[float, float]] = {
    "mean": (0.02, 0.05),
    "std": (0.10, 0.25),
    "kurtosis": (0.405, 1.099),  # within a factor 1.5 / 3: one crash can double the kurtosis of a sample
    "lag1": (0.03, 0.08),
    "kl": (0.02, 0.10),
    "coverage": (0.10, 0.30),
    "hill": (0.15, 0.35),
    "volatility_clustering": (0.03, 0.08),
    "linear_acf": (0.02, 0.05),
    "leverage": (0.02, 0.05),
    "aggregation": (0.10, 0.25),
    "discriminative": (0.05, 0.15),
    "predictive": (0.10, 0.30),
    "tstr": (0.05, 0.15),
    "validity": (0.001, 0.01),
}


def grade(distance: float | None, rule: str) -> str:
    """``good``/``fair``/``poor`` for a distance under ``VERDICT_RULES[rule]``; ``n/a`` for None or NaN."""
    if distance is None or not math.isfinite(distance):
        return "n/a"
    good, fair = VERDICT_RULES[rule]
    return "good" if distance <= good else "fair" if distance <= fair else "poor"


def limits_text(rule: str, percent: bool = False) -> str:
    """``"good within 0.02, fair within 0.05"`` for the explanations."""
    good, fair = VERDICT_RULES[rule]
    show = (lambda x: f"{x:.0%}") if percent else (lambda x: f"{x:g}")
    return f"good within {show(good)}, fair within {show(fair)}"


def plain_json(value):
    """JSON-safe plain Python: numpy scalars and arrays to numbers and lists, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain_json(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


@dataclass
class MetricRecord:
    group: str
    name: str
    real: float | None
    synthetic: float | None
    distance: float | None
    better: str  # "closer" | "lower" | "higher"
    verdict: str  # "good" | "fair" | "poor" | "n/a"
    explanation: str
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        for name in ("real", "synthetic", "distance"):
            value = getattr(self, name)
            setattr(self, name, None if value is None or not math.isfinite(value) else float(value))

    def to_dict(self) -> dict:
        return plain_json(asdict(self))


@dataclass
class EvaluationResult:
    """What ``evaluate`` returns: the records, the settings, notes, and the curves behind the report's plots.

    ``curves`` holds arrays (return samples, ACFs per lag, distances); ``to_json`` leaves them out unless
    asked, to keep the metrics file small. ``diagnosis`` (a ``diagnosis.Diagnosis``, from ``evaluate(...,
    diagnose=True)``) is saved with the records when present.
    """

    records: list[MetricRecord]
    protocol: str
    seq_len: int
    n_real: int
    n_synthetic: int
    n_train: int | None
    seed: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    curves: dict = field(default_factory=dict, repr=False)
    diagnosis: Any = None  # diagnosis.Diagnosis (not imported: diagnosis builds on this module)

    def record(self, name: str) -> MetricRecord:
        """The record called ``name`` (KeyError listing the names if there is none)."""
        for record in self.records:
            if record.name == name:
                return record
        raise KeyError(f"no metric {name!r}; have: {', '.join(r.name for r in self.records)}")

    def to_frame(self):
        """The records as a pandas DataFrame, one row per metric (``details`` as a dict column)."""
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.records])

    def verdict_counts(self) -> dict[str, int]:
        return {v: sum(r.verdict == v for r in self.records) for v in VERDICTS}

    def to_dict(self, curves: bool = False) -> dict:
        out = {
            "protocol": self.protocol,
            "seq_len": self.seq_len,
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            "n_train": self.n_train,
            "seed": self.seed,
            "seconds": round(self.seconds, 2),
            "verdicts": self.verdict_counts(),
            "notes": list(self.notes),
            "records": [r.to_dict() for r in self.records],
        }
        if self.diagnosis is not None:
            out["diagnosis"] = self.diagnosis.to_dict()
        if curves:
            out["curves"] = plain_json(self.curves)
        return out

    def to_json(self, path: str | Path | None = None, *, curves: bool = False, indent: int = 2) -> str:
        """The result as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(curves=curves), indent=indent)
        if path is not None:
            with atomic_path(Path(path)) as tmp:
                tmp.write_text(text + "\n", encoding="utf-8")
        return text
