"""Experiments with strategies and generators: the augmentation experiment (``augment``: does training on real +
synthetic bars trade better than real only, or than a null augmentation?) and the stress test (``stress``: a
strategy over many synthetic paths, e.g. a cgan's crash regime). ``report`` writes their text and HTML reports."""

from marketsynth.trading.experiments.augment import AugmentResult, AugmentSettings, run_augment
from marketsynth.trading.experiments.stress import StressPaths, StressResult, path_stats, run_stress, stress_paths

__all__ = ["AugmentResult", "AugmentSettings", "StressPaths", "StressResult", "path_stats", "run_augment",
           "run_stress", "stress_paths"]
