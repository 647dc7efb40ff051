"""Risk scenarios from a trained model: simulate horizon returns, measure their tails, stress them.

What a scenario is
    One synthetic path of ``horizon`` bars starting from a price ``S0``. Its horizon return is the **simple**
    return ``close_H / S0 - 1`` and its P&L is ``position x`` that return, a fraction of capital (``position`` is
    the exposure as a multiple of capital: 1 = long all of it, -0.5 = short half of it). Every figure below is
    about that P&L, so a short position's losses come from the upper tail.

How paths are simulated (one batched ``model.sample`` call per setting, no Python loop over scenarios)
    * candle models (dcgan, wgan-gp, timegan, garch, cgan): ``generation.sample_paths`` gives model-space
      windows of ``horizon`` bars, turned into closes by the checkpoint's representation; recurrent models
      (``native_long_paths``) run one state for the whole horizon, window models (dcgan) chain independent
      windows, which ``check_horizon`` states; a model that can do neither refuses horizons past its window.
      Only the closes are needed (``close_returns``). With the legacy ``minmax-ohlcv`` encoding (absolute
      prices) ``S0`` is the first bar's open.
    * glow models per-bar *feature vectors*, not paths: a scenario is ``horizon`` i.i.d. draws whose
      ``return_1`` (a log return) are summed. That ignores temporal dependence — volatility clustering and
      trends — so multi-bar tails are likely understated; the notes say so.

Stress rows (same seed, so every row reuses the same draws) change one thing each and say what
(``RiskSummary.changes``): a hotter temperature for models whose temperature widens the distribution
(``models.capabilities.Temperature``: the mixture components' scales, GARCH's return shocks, a flow's latent
noise), and the crash regime for conditional models. Models without a temperature (the GANs: scaling their noise
is no stress; on a cgan it *lowered* VaR from 0.190 to 0.119) get no temperature rows and refuse one. A stress row
whose VaR or CVaR is below the baseline's is flagged (``RiskSummary.flag``): the table never reports less risk
under more stress without saying so. The real-data comparison uses every overlapping ``horizon``-bar window of the
real closes that spans no time gap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from marketsynth.compute import torch_threads
from marketsynth.errors import ConfigError, MarketSynthError, ModelError
from marketsynth.generation import regime_conditions, sample_paths  # shared with 'generate': the same rules
from marketsynth.models.capabilities import Conditional, Temperature
from marketsynth.progress import Progress, or_silent
from marketsynth.risk.measures import (
    LEVELS,
    PERCENTILES,
    Distribution,
    TailRisk,
    bootstrap_stderr,
    distribution,
    tail_risk,
)
from marketsynth.risk.real_data import real_horizon_returns

STRESS_TEMPERATURES = (1.0, 1.5, 2.0)  # for models with a sampling temperature
STRESS_REGIME = "crash"
LESS_RISK = "⚠ less risk than the baseline under this stress"
MIN_SCENARIOS = 10
RETURN_DEFINITION = ("simple horizon return close_H / S0 - 1 (S0: the price the path starts from) times the "
                     "position, as a fraction of capital")


# ---- validation ------------------------------------------------------------------------------------------------
def check_settings(*, num: int, horizon: int, temperature: float | None, position: float, threshold: float,
                   stress_temperatures: Sequence[float] | None = None) -> None:
    """One ConfigError line for any option out of range."""
    if num < MIN_SCENARIOS:
        raise ConfigError(f"--num must be at least {MIN_SCENARIOS} scenarios (tail figures need a tail), got {num}")
    if horizon < 1:
        raise ConfigError(f"--horizon must be at least 1 bar, got {horizon}")
    given = [] if temperature is None else [(temperature, "--temperature")]
    for value, option in [*given, *((t, "--stress-temperatures") for t in stress_temperatures or ())]:
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{option} must be positive (1 = as trained), got {value}")
    if not math.isfinite(position) or position == 0:
        raise ConfigError(f"--position must be a non-zero multiple of capital (1 long, -1 short), got {position}")
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ConfigError(f"--threshold is a loss fraction >= 0 (0.1 = a 10% loss), got {threshold}")


def return_feature(checkpoint) -> int | None:
    """Index of ``return_1`` for models of bar features (glow); None for candle models."""
    if checkpoint.representation is not None:
        return None
    names = list(getattr(checkpoint.model, "feature_names", ()) or ())
    if "return_1" not in names:
        raise ModelError(f"{checkpoint.model.name} in {checkpoint.path} cannot simulate price scenarios: it has no "
                         f"representation to decode candles and no return_1 feature")
    return names.index("return_1")


def check_horizon(checkpoint, horizon: int, conditions=None) -> str | None:
    """None when the model simulates ``horizon`` bars as one process; a note when it chains windows (or draws
    i.i.d. bar features); a ModelError when it cannot reach the horizon at all."""
    model = checkpoint.model
    if return_feature(checkpoint) is not None:
        return (f"{model.name} models single bars, so each scenario sums {horizon} i.i.d. return_1 draws: this "
                f"ignores temporal dependence (volatility clustering, trends), so multi-bar tails are likely "
                f"understated")
    seq_len = int(model.config.seq_len)
    if model.native_long_paths or horizon <= seq_len:
        return None
    probe_conditions = None if conditions is None else conditions[:2]
    try:  # generation.sample_paths hands `length` to the model; window models chain there or refuse
        probe = np.asarray(model.sample(2, probe_conditions, seed=0, length=horizon))
    except MarketSynthError as exc:
        raise ModelError(f"--horizon {horizon} is longer than the {seq_len}-bar windows {model.name} generates and "
                         f"it cannot chain them ({exc}); use --horizon {seq_len} or less") from None
    if probe.ndim != 3 or probe.shape[1] != horizon:
        raise ModelError(f"--horizon {horizon} is longer than the {seq_len}-bar windows {model.name} generates and "
                         f"it does not chain them; use --horizon {seq_len} or less")
    windows = math.ceil(horizon / seq_len)
    return (f"{model.name} generates {seq_len}-bar windows, so each {horizon}-bar scenario chains {windows} "
            f"independent windows: continuous in price, but no volatility or trend carries across a boundary")


# ---- simulation ------------------------------------------------------------------------------------------------
def simulate_paths(checkpoint, num: int, horizon: int, *, temperature: float | None = None,
                   regime: str | None = None, seed: int = 0, threads: int | None = None) -> np.ndarray:
    """Cumulative simple returns ``[num, horizon]``: column t is ``close_t / S0 - 1`` (the last is the horizon
    return). One batched sampling call; the same seed gives the same paths. ``temperature`` only for models
    that have one."""
    model = checkpoint.model
    conditions = regime_conditions(model, regime, num)
    feature = return_feature(checkpoint)
    with torch_threads(threads):
        raw = sample_paths(model, num, seed=seed, length=horizon, temperature=temperature, conditions=conditions)
    if raw.ndim != 3 or raw.shape[:2] != (num, horizon):
        raise ModelError(f"{model.name} returned samples shaped {raw.shape}, not [{num}, {horizon}, features]")
    if feature is not None:
        log_paths = np.cumsum(raw[:, :, feature], axis=1, dtype=np.float64)
        paths = np.expm1(log_paths)
    else:
        paths = close_returns(checkpoint.representation, raw)
    if not np.isfinite(paths).all():
        hotter = f" at temperature {temperature}; lower it" if temperature is not None else "; check the model"
        raise ModelError(f"{model.name} produced non-finite returns{hotter}")
    return paths


def close_returns(representation, raw: np.ndarray) -> np.ndarray:
    """``close_t / S0 - 1`` of model-space windows ``[n, L, F]``.

    With the log-returns encoding the close log return is the ``ret`` feature, so ``expm1(cumsum(ret))`` is
    exactly what ``decode`` gives for the closes (the test suite checks it against generated candles) at a
    fifth of the cost: decoding opens, wicks and volumes took as long as sampling garch. Other encodings go
    through ``decode``; ``minmax-ohlcv`` holds absolute prices, so its ``S0`` is the first bar's open."""
    from marketsynth.representation import LogReturnRepresentation

    if isinstance(representation, LogReturnRepresentation) and representation.fitted:
        i = representation.feature_names.index("ret")
        log_returns = representation.unscaled_feature(raw[:, :, i], "ret")
        with np.errstate(over="ignore", invalid="ignore"):
            return np.expm1(np.cumsum(log_returns, axis=1))
    candles = representation.decode(raw, start_price=1.0)
    start = 1.0 if representation.name == "log-returns" else candles[:, :1, 0]
    return candles[:, :, 3] / start - 1.0


# ---- summaries -------------------------------------------------------------------------------------------------
@dataclass
class RiskSummary:
    """Tail risk and distribution of one set of outcomes (P&L fractions of capital)."""

    label: str
    tails: list[TailRisk]
    dist: Distribution
    worst_loss: float
    loss_beyond_threshold: float
    temperature: float | None = None  # None: a model without a sampling temperature
    regime: str | None = None
    changes: str = ""  # what this stress row changes against the baseline
    flag: str = ""  # LESS_RISK when a stress row shows less risk than the baseline

    def tail(self, level: float) -> TailRisk:
        return next(t for t in self.tails if math.isclose(t.level, level))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "temperature": self.temperature, "regime": self.regime,
                               "changes": self.changes, "flag": self.flag}
        for t in self.tails:
            pct = round(t.level * 100)
            out.update({f"var_{pct}": t.var, f"cvar_{pct}": t.cvar, f"var_{pct}_normal": t.var_normal,
                        f"cvar_{pct}_normal": t.cvar_normal})
        out.update(worst_loss=self.worst_loss, prob_loss_beyond_threshold=self.loss_beyond_threshold,
                   distribution=self.dist.to_dict())
        return out


def summarize(pnl: np.ndarray, *, label: str, threshold: float, levels: Sequence[float] = LEVELS,
              temperature: float | None = None, regime: str | None = None) -> RiskSummary:
    pnl = np.asarray(pnl, dtype=np.float64)
    return RiskSummary(label, tail_risk(pnl, levels), distribution(pnl), float(-pnl.min()),
                       float((-pnl > threshold).mean()), temperature, regime)


@dataclass
class ScenarioAnalysis:
    """Everything ``marketsynth scenarios`` shows: the base run, the real-data comparison, the stress table."""

    settings: dict[str, Any]
    model: dict[str, Any]
    base: RiskSummary
    stress: list[RiskSummary]
    real: RiskSummary | None
    real_note: str
    fan: np.ndarray  # [len(PERCENTILES), horizon + 1] cumulative P&L percentiles, step 0 = 0
    pnl: np.ndarray  # base scenarios' P&L, for the loss histogram
    notes: list[str] = field(default_factory=list)
    stderr: dict[float, tuple[float, float]] = field(default_factory=dict)  # level -> bootstrap s.e. (VaR, CVaR)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "settings": self.settings,
            "return_definition": RETURN_DEFINITION,
            "sign_convention": "VaR, CVaR and worst loss are positive loss fractions of capital; "
                               "VaR at level a is exceeded in at most (1 - a) of outcomes",
            "scenarios": self.base.to_dict(),
            "scenarios_stderr": {f"{key}_{round(level * 100)}": value for level, pair in self.stderr.items()
                                 for key, value in zip(("var", "cvar"), pair, strict=True)},
            "real": self.real.to_dict() if self.real is not None else None,
            "real_source": self.real_note,
            "stress": [row.to_dict() for row in self.stress],
            "fan_chart": {"percentiles": list(PERCENTILES), "values": self.fan.round(8).tolist()},
            "notes": self.notes,
        }


def analyse(checkpoint, *, num: int = 2000, horizon: int = 24, temperature: float | None = None,
            regime: str | None = None, position: float = 1.0, threshold: float = 0.1, seed: int = 0,
            stress_temperatures: Sequence[float] | None = None, real_bars: pd.DataFrame | None = None,
            real_source: str = "", threads: int | None = None,
            progress: Progress | None = None) -> ScenarioAnalysis:
    """Simulate the base scenarios and every stress setting (same seed), and summarise them.

    ``temperature`` (default 1) and ``stress_temperatures`` (default ``STRESS_TEMPERATURES``) apply only to
    ``Temperature`` models; any other model refuses them in one line that says what it offers instead.
    ``progress`` hears of the ``scenarios`` stage, one step per stress setting."""
    check_settings(num=num, horizon=horizon, temperature=temperature, position=position, threshold=threshold,
                   stress_temperatures=stress_temperatures)
    model = checkpoint.model
    notes = [f"P&L = {RETURN_DEFINITION}"]
    chained = check_horizon(checkpoint, horizon, regime_conditions(model, regime, num))
    if chained:
        notes.append(chained)
    settings = stress_settings(model, temperature, regime, stress_temperatures)
    base_setting = settings[0]
    if isinstance(model, Conditional) and regime != STRESS_REGIME and crash_problem(model) is not None:
        notes.append(f"no {STRESS_REGIME} stress row: {crash_problem(model)}")
    stress, base_paths = [], None
    progress = or_silent(progress)
    progress.start("scenarios", len(settings), "")
    for temp, reg in settings:
        paths = simulate_paths(checkpoint, num, horizon, temperature=temp, regime=reg, seed=seed,
                               threads=threads) * position
        is_base = (temp, reg) == base_setting
        base_paths = paths if is_base else base_paths  # only the base run's paths are kept (fan chart)
        stress.append(summarize(paths[:, -1], label=_label(temp, reg, base=is_base), threshold=threshold,
                                temperature=temp, regime=reg))
        stress[-1].changes = _changes(model, (temp, reg), base_setting)
        progress.advance("scenarios", 1, stress[-1].label)
    base = next(row for row in stress if (row.temperature, row.regime) == base_setting)
    for row in stress:
        if row is not base and _is_stress((row.temperature, row.regime), base_setting) and _less_risk(row, base):
            row.flag = LESS_RISK
    flagged = [row.label for row in stress if row.flag]
    if flagged:
        notes.append(f"{', '.join(flagged)}: less risk than the baseline under a stress: {model.name}'s tails do "
                     f"not widen there, so do not read that row as a stress test")
    notes += _monotonicity_notes([row for row in stress if row.regime == regime and row.temperature is not None])
    real, real_note = None, f"n/a: {real_source or 'no real data given'}"
    if real_bars is not None:
        real_pnl = real_horizon_returns(real_bars, horizon) * position
        if len(real_pnl) >= MIN_SCENARIOS:
            real = summarize(real_pnl, label="real data", threshold=threshold)
            real_note = f"{real_source}: {len(real_pnl)} overlapping {horizon}-bar windows"
        else:
            real_note = (f"n/a: {real_source} has only {len(real_pnl)} gap-free {horizon}-bar windows "
                         f"(need {MIN_SCENARIOS})")
    fan = np.percentile(base_paths, list(PERCENTILES), axis=0)
    fan = np.concatenate([np.zeros((len(PERCENTILES), 1)), fan], axis=1)
    info = {"path": str(checkpoint.path), "name": model.name, "seq_len": int(model.config.seq_len),
            "conditional": isinstance(model, Conditional),
            "temperature_scales": model.temperature_scales if isinstance(model, Temperature) else None,
            "simulation": "i.i.d. return_1 draws" if return_feature(checkpoint) is not None else
            ("one continuous path" if model.native_long_paths or horizon <= model.config.seq_len
             else "chained windows")}
    options = {"num": num, "horizon": horizon, "temperature": base_setting[0], "regime": regime,
               "position": position, "threshold": threshold, "seed": seed,
               "stress_temperatures": sorted({t for t, _ in settings if t is not None})}
    stderr = {level: bootstrap_stderr(base_paths[:, -1], level, seed=seed) for level in LEVELS}
    return ScenarioAnalysis(options, info, base, stress, real, real_note, fan, base_paths[:, -1], notes, stderr)


def stress_settings(model, temperature: float | None, regime: str | None,
                    stress_temperatures: Sequence[float] | None = None) -> list[tuple[float | None, str | None]]:
    """(temperature, regime) of every simulation, the base run first: for ``Temperature`` models each stress
    temperature in the base regime; for conditional models the crash regime at the base temperature. A model
    without a temperature refuses ``temperature``/``stress_temperatures`` (None: the defaults)."""
    if isinstance(model, Temperature):
        base = (model.check_temperature(temperature), regime)
        temps = STRESS_TEMPERATURES if stress_temperatures is None else stress_temperatures
        settings = [base, *((float(t), regime) for t in dict.fromkeys(temps) if (float(t), regime) != base)]
    else:
        if temperature is not None or stress_temperatures:
            raise ModelError(model.no_temperature())
        base = (None, regime)
        settings = [base]
    if isinstance(model, Conditional) and regime != STRESS_REGIME and crash_problem(model) is None:
        settings.append((base[0], STRESS_REGIME))
    return settings


def crash_problem(model) -> str | None:
    """Why a conditional model cannot simulate the crash stress row (None when it can)."""
    try:
        regime_conditions(model, STRESS_REGIME, 1)
    except MarketSynthError as exc:
        return str(exc)
    return None


def _label(temperature: float | None, regime: str | None, *, base: bool) -> str:
    parts = ([f"T={temperature:g}"] if temperature is not None else []) + ([regime] if regime else [])
    text = ", ".join(parts) or "as trained"
    return f"{text} (base)" if base else text


def _changes(model, setting: tuple[float | None, str | None], base: tuple[float | None, str | None]) -> str:
    """What a row changes against the base run, e.g. ``temperature 2: the return shocks × 2``."""
    if setting == base:
        return "nothing (the baseline)"
    (temp, regime), (base_temp, base_regime) = setting, base
    parts = []
    if regime != base_regime:
        parts.append(f"regime {regime}: the {regime} label")
    if temp != base_temp and isinstance(model, Temperature):
        parts.append(model.describe_temperature(temp) + (" (calmer than the baseline)" if temp < base_temp else ""))
    return "; ".join(parts)


def _is_stress(setting: tuple[float | None, str | None], base: tuple[float | None, str | None]) -> bool:
    """A row meant to show more risk than the base: a hotter temperature or another regime (the crash row)."""
    (temp, regime), (base_temp, base_regime) = setting, base
    return regime != base_regime or (temp is not None and base_temp is not None and temp > base_temp)


def _less_risk(row: RiskSummary, base: RiskSummary) -> bool:
    """Whether any VaR or CVaR of ``row`` is below the base row's."""
    return any(getattr(row.tail(level), key) < getattr(base.tail(level), key) for level in LEVELS
               for key in ("var", "cvar"))


def _monotonicity_notes(rows: list[RiskSummary]) -> list[str]:
    """Say where a hotter temperature gave a *smaller* tail loss than a cooler one (same seed)."""
    notes = []
    ordered = sorted(rows, key=lambda r: r.temperature)
    for cool, hot in zip(ordered, ordered[1:], strict=False):
        smaller = [f"{name} {level:.0%} {getattr(hot.tail(level), key):.4f} < {getattr(cool.tail(level), key):.4f}"
                   for level in LEVELS for key, name in (("var", "VaR"), ("cvar", "CVaR"))
                   if getattr(hot.tail(level), key) < getattr(cool.tail(level), key)]
        if smaller:
            notes.append(f"T={hot.temperature:g} gives smaller tail losses than T={cool.temperature:g} on the same "
                         f"seed ({', '.join(smaller)}): this model's tails do not widen with temperature there")
    return notes
