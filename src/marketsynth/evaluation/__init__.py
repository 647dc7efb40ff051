"""Evaluation of synthetic candles against real ones: pure functions over arrays plus ``evaluate``.

``evaluate(real_windows, synthetic_windows, seq_len=...)`` runs every metric and returns an
``EvaluationResult`` (a list of ``MetricRecord`` rows with verdicts and plain-language explanations, plus the
curves behind the report's plots). The building blocks are public so the report and the benchmarks can reuse
them: ``inputs`` (windows and features), ``fidelity``, ``stylized``, ``classifiers``, ``privacy``.
"""

from marketsynth.evaluation.classifiers import discriminative_score, predictive_score, tstr
from marketsynth.evaluation.fidelity import (
    candle_validity_rate,
    coverage,
    expected_coverage,
    histogram_kl,
    return_statistics,
)
from marketsynth.evaluation.inputs import (
    candle_windows,
    timegan_windows,
    window_features,
    window_returns,
    windows_from_long_frame,
)
from marketsynth.evaluation.metrics import (
    BENCHMARK_DISCRIMINATORS,
    PROTOCOLS,
    Discriminator,
    Protocol,
    evaluate,
    real_vs_real_floor,
)
from marketsynth.evaluation.privacy import memorization
from marketsynth.evaluation.records import VERDICT_RULES, EvaluationResult, MetricRecord
from marketsynth.evaluation.stylized import acf, hill_tail_index, leverage, stylized_profile

__all__ = [
    "BENCHMARK_DISCRIMINATORS",
    "PROTOCOLS",
    "VERDICT_RULES",
    "Discriminator",
    "EvaluationResult",
    "MetricRecord",
    "Protocol",
    "acf",
    "candle_validity_rate",
    "candle_windows",
    "coverage",
    "discriminative_score",
    "evaluate",
    "expected_coverage",
    "hill_tail_index",
    "histogram_kl",
    "leverage",
    "memorization",
    "predictive_score",
    "real_vs_real_floor",
    "return_statistics",
    "stylized_profile",
    "timegan_windows",
    "tstr",
    "window_features",
    "window_returns",
    "windows_from_long_frame",
]
