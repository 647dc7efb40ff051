"""Risk scenarios: VaR/CVaR (historical, parametric normal, Monte Carlo), distribution statistics, stress tests.

``measures`` holds pure functions over return samples (losses reported as positive fractions); ``scenarios``
simulates horizon returns from a checkpoint and summarises them (``analyse``), next to the real data of
``real_data``; ``report`` draws the HTML section.
"""

from marketsynth.risk.measures import (
    LEVELS,
    PERCENTILES,
    Distribution,
    TailRisk,
    bootstrap_stderr,
    distribution,
    historical_cvar,
    historical_var,
    loss_probability,
    monte_carlo_var,
    parametric_cvar,
    parametric_var,
    tail_risk,
    worst_loss,
)
from marketsynth.risk.real_data import real_horizon_returns
from marketsynth.risk.scenarios import (
    RiskSummary,
    ScenarioAnalysis,
    analyse,
    simulate_paths,
    summarize,
)

__all__ = [
    "LEVELS",
    "PERCENTILES",
    "Distribution",
    "RiskSummary",
    "ScenarioAnalysis",
    "TailRisk",
    "analyse",
    "bootstrap_stderr",
    "distribution",
    "historical_cvar",
    "historical_var",
    "loss_probability",
    "monte_carlo_var",
    "parametric_cvar",
    "parametric_var",
    "real_horizon_returns",
    "simulate_paths",
    "summarize",
    "tail_risk",
    "worst_loss",
]
