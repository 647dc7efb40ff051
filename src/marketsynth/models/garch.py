"""GARCH(1,1) with Student-t innovations: the classical baseline every deep model is compared to.

What is modelled
    The close-return column is fitted with ``arch`` (constant mean, GARCH(1,1), standardized Student-t). The
    other features (open gap, wicks, volume) are not modelled parametrically: each simulated bar gets the
    joint (gap, upper, lower, volume) row of a *real* training bar drawn from the same cell of a 2-D grid over
    (conditional volatility quantile) x (|standardized shock| quantile). Volatile bars and big moves therefore
    get the wide wicks and high volume they have in real markets, and the cross-feature dependence inside a
    bar is the data's own.

Units
    The model sees the representation's *scaled* features. The scaled return column is an affine map
    ``(r - c) / s`` of the log return, and GARCH with a constant mean is closed under affine maps (``mu`` and
    ``sqrt(omega)`` scale with ``1/s``; alpha, beta, nu are unchanged), so fitting directly in scaled space is
    exact and the model never needs the scaling. For the optimiser the series is multiplied by
    ``10 / std`` (variance 100, well inside the range ``arch`` is tuned for, whatever the scaling) and the
    factor is divided out of the reported parameters, which are in the units of the input column.

Training series
    ``training_arrays`` takes every bar of the gap-free segments (each without its first bar, whose return spans
    the gap before it) and concatenates them into one series ``[T, F]`` for one fit, so every bar counts once.
    With ``val_fraction`` the held-out bars are left out of the fit.

Temperature
    ``temperature`` multiplies the simulated return shocks (a ``Temperature`` model): tail losses grow with it
    exactly, so a hotter run is a stress scenario.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from marketsynth.errors import ConfigError, DataError, ModelError
from marketsynth.models.base import GenerativeModel, History, ModelConfig
from marketsynth.models.capabilities import Temperature
from marketsynth.models.data import TrainingArrays, TrainingData
from marketsynth.representation import Representation

_STARTS = ("empirical", "last")
_REPRESENTATION = "log-returns"
_PARAMS = ("mu", "omega", "alpha", "beta", "nu")
_MIN_BARS = 50  # five parameters; estimates are poor below a few thousand bars but the fit still runs


@dataclass
class GarchConfig(ModelConfig):
    """``start``: 'empirical' begins each path at the fitted conditional variance of a random training bar,
    so windows start in the volatility states the data visited (like random windows of the data). It stays
    well defined when the fit is (near-)integrated, alpha + beta ~ 1, as it usually is for crypto, where the
    unconditional variance omega / (1 - alpha - beta) explodes. 'last' continues from the variance forecast
    after the last training bar (scenarios "from now on"). ``vol_bins`` x ``shock_bins`` is the grid of the
    empirical tables (25 cells keep a few hundred bars per cell on a year of 1h data).

    ``cap_shocks``: crypto fits often give nu < 3 and alpha + beta ~ 1; uncapped, a 24-bar path then reaches
    returns of hundreds of sigmas (excess kurtosis in the hundreds against single digits in the data). With the
    cap, shocks follow the fitted Student-t truncated at the largest |standardized residual| of the training
    data: as heavy-tailed as the data, never beyond what it showed."""

    return_feature: int = 1  # index of the close log return in the feature vector
    start: str = "empirical"
    cap_shocks: bool = True  # redraw simulated shocks larger than the largest standardized residual in training
    vol_bins: int = 5
    shock_bins: int = 5


class GarchModel(Temperature, GenerativeModel):
    """Fit once (``fit_once``), then simulate independent paths of any length (``sample``)."""

    name = "garch"
    default_epochs = 1
    Config: ClassVar[type[ModelConfig]] = GarchConfig
    iterative = False
    has_latent = False
    native_long_paths = True
    temperature_scales = "the return shocks"

    def __init__(self, config: GarchConfig | dict | None = None, *, device: str | torch.device = "cpu", seed: int = 0):
        super().__init__(config, device=device, seed=seed)
        cfg = self.config
        if cfg.start not in _STARTS:
            raise ConfigError(f"unknown garch start '{cfg.start}'; use one of {', '.join(_STARTS)}")
        if not 0 <= cfg.return_feature < cfg.n_features:
            raise ConfigError(
                f"return_feature {cfg.return_feature} is not a feature index (n_features={cfg.n_features})"
            )
        if cfg.vol_bins < 1 or cfg.shock_bins < 1:
            raise ConfigError("vol_bins and shock_bins must be at least 1")
        self.params: dict[str, float] | None = None  # in units of the input return column
        self.fit_stats: dict[str, float] = {}
        self.last_variance = math.nan  # one-step-ahead variance after the last training bar
        self.vol_edges = np.zeros(0)  # interior quantile edges of conditional volatility
        self.shock_edges = np.zeros(0)  # interior quantile edges of |standardized residual|
        self.aux_rows = np.zeros((0, cfg.n_features - 1))  # other features of every training bar, sorted by cell
        self.cell_start = np.zeros(0, dtype=np.int64)  # per cell: first row in aux_rows (after empty-cell fallback)
        self.cell_count = np.zeros(0, dtype=np.int64)
        self.fitted_sigma = np.zeros(0)  # conditional volatility of every training bar (path starts)
        self.max_shock = math.inf  # largest |standardized residual| in training (the cap on simulated shocks)

    # ---- fitting -------------------------------------------------------------------------------------------
    @classmethod
    def representation_for(cls, requested: str) -> Representation | None:
        if requested != _REPRESENTATION:  # it fits GARCH to the close log-return column
            raise ConfigError(f"{cls.name} needs the {_REPRESENTATION} representation, not {requested}; drop "
                              f"--representation or use --representation {_REPRESENTATION}")
        return super().representation_for(requested)

    def training_arrays(self, data: TrainingData) -> TrainingArrays:
        """Every training bar of the gap-free segments as one series ``[T, F]`` (see the module docstring)."""
        stop = data.split(self.config.seq_len).stop if data.val_fraction else None
        encoded = data.encoded()
        return TrainingArrays(np.concatenate([encoded[r] for r in data.feature_runs(stop)]), kind="bars")

    def fit_once(self, arrays: TrainingArrays) -> History:
        """One maximum-likelihood fit on the series ``arrays.train`` ``[T, F]``. The History has one row:
        log-likelihood, AIC, BIC, parameters, persistence and size."""
        from arch import arch_model

        series = self._check_series(arrays.train)
        returns = series[:, self.config.return_feature]
        if len(returns) < _MIN_BARS:
            raise DataError(f"GARCH needs at least {_MIN_BARS} bars to fit, got {len(returns)}; use more data")
        spread = float(np.std(returns))
        if not np.isfinite(spread) or spread <= 0:
            raise DataError("the return column is constant or not finite; GARCH cannot be fitted to it")
        factor = 10.0 / spread
        result = arch_model(returns * factor, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False).fit(
            disp="off", show_warning=False
        )
        values = result.params
        fitted = dict(
            zip(_PARAMS, (float(values[k]) for k in ("mu", "omega", "alpha[1]", "beta[1]", "nu")), strict=True)
        )
        if not all(np.isfinite(v) for v in fitted.values()):
            raise ModelError(f"the GARCH fit did not converge (parameters {fitted}); check the return column")
        self.params = {**fitted, "mu": fitted["mu"] / factor, "omega": fitted["omega"] / factor**2}
        sigma = np.asarray(result.conditional_volatility) / factor
        resid = returns - self.params["mu"]
        self.last_variance = (
            self.params["omega"] + self.params["alpha"] * resid[-1] ** 2 + self.params["beta"] * sigma[-1] ** 2
        )
        standardized = np.abs(resid / sigma)
        self.max_shock = float(np.max(standardized))
        self._build_tables(series, sigma, standardized)
        self.fit_stats = {
            "loglik": float(result.loglikelihood) + len(returns) * math.log(factor),
            "aic": float(result.aic) - 2 * len(returns) * math.log(factor),
            "bic": float(result.bic) - 2 * len(returns) * math.log(factor),
            "persistence": self.params["alpha"] + self.params["beta"],
            "n_obs": float(len(returns)),
            "converged": float(result.convergence_flag == 0),
        }
        history = History()
        history.append({**self.fit_stats, **self.params})
        return history

    def _check_series(self, series: np.ndarray) -> np.ndarray:
        series = np.asarray(series, dtype=np.float64)
        if series.ndim != 2 or series.shape[1] != self.config.n_features:
            raise DataError(f"the training series must be [T, {self.config.n_features}] bars, got shape {series.shape}")
        if not np.isfinite(series).all():
            raise DataError("the training series contains NaN or infinite values")
        return series

    def _build_tables(self, series: np.ndarray, sigma: np.ndarray, shock: np.ndarray) -> None:
        """Sort the other features of each bar by grid cell; empty cells borrow the nearest filled cell."""
        cfg = self.config
        self.vol_edges = np.quantile(sigma, np.arange(1, cfg.vol_bins) / cfg.vol_bins)
        self.shock_edges = np.quantile(shock, np.arange(1, cfg.shock_bins) / cfg.shock_bins)
        cells = self._cells(sigma, shock)
        order = np.argsort(cells, kind="stable")
        self.aux_rows = np.delete(series, cfg.return_feature, axis=1)[order]
        self.fitted_sigma = sigma
        n_cells = cfg.vol_bins * cfg.shock_bins
        count = np.bincount(cells, minlength=n_cells)
        start = np.concatenate([[0], np.cumsum(count)[:-1]])
        grid = np.stack(np.divmod(np.arange(n_cells), cfg.shock_bins), axis=1)  # (vol bin, shock bin) per cell
        filled = np.flatnonzero(count)
        distance = np.abs(grid[:, None, :] - grid[None, filled, :]).sum(axis=2)
        source = filled[np.argmin(distance, axis=1)]  # itself when non-empty
        self.cell_start, self.cell_count = start[source].astype(np.int64), count[source].astype(np.int64)

    def _cells(self, sigma: np.ndarray, shock: np.ndarray) -> np.ndarray:
        vol_bin = np.searchsorted(self.vol_edges, sigma, side="right")
        shock_bin = np.searchsorted(self.shock_edges, shock, side="right")
        return vol_bin * self.config.shock_bins + shock_bin

    # ---- generation ----------------------------------------------------------------------------------------
    def _sample(self, n: int, conditions, *, seed: int, length: int, temperature: float) -> np.ndarray:
        """``n`` independent paths ``[n, length, n_features]``. ``temperature`` multiplies the simulated
        shocks (returns around the mean); the variance recursion runs on the untempered shocks, so the
        volatility dynamics stay the fitted ones; the empirical tables are looked up with the tempered
        volatility, so a hotter market also gets wider wicks and more volume."""
        if self.params is None:
            raise ModelError("the garch model is not fitted; fit it or load a fitted checkpoint before sampling")
        p, cfg = self.params, self.config
        rng = np.random.default_rng(seed)
        if cfg.start == "last":
            variance = np.full(n, self.last_variance)
        else:
            variance = self.fitted_sigma[rng.integers(0, len(self.fitted_sigma), n)] ** 2
        shock = self._shocks(rng, (length, n))
        sigma = np.empty((length, n))
        for t in range(length):  # the recursion is sequential in time, vectorised over paths
            sigma[t] = np.sqrt(variance)
            variance = p["omega"] + (p["alpha"] * shock[t] ** 2 + p["beta"]) * variance
        out = np.empty((n, length, cfg.n_features))
        out[:, :, cfg.return_feature] = (p["mu"] + temperature * sigma * shock).T
        if cfg.n_features > 1:
            cells = self._cells(temperature * sigma, np.abs(shock))
            pick = self.cell_start[cells] + np.floor(rng.random(cells.shape) * self.cell_count[cells]).astype(np.int64)
            others = [i for i in range(cfg.n_features) if i != cfg.return_feature]
            out[:, :, others] = self.aux_rows[pick.T]
        return out.astype(np.float32)

    def _shocks(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        """Unit-variance Student-t draws; with ``cap_shocks``, those beyond the training maximum are redrawn."""
        nu = self.params["nu"]
        scale_t = math.sqrt((nu - 2) / nu) if nu > 2 else 1.0  # standardizes the t draws to unit variance
        shock = rng.standard_t(nu, size=shape) * scale_t
        if self.config.cap_shocks and math.isfinite(self.max_shock):
            for _ in range(100):  # each round redraws the few out-of-range draws; P(left) shrinks geometrically
                outside = np.abs(shock) > self.max_shock
                if not outside.any():
                    break
                shock[outside] = rng.standard_t(nu, size=int(outside.sum())) * scale_t
            np.clip(shock, -self.max_shock, self.max_shock, out=shock)
        return shock

    # ---- persistence: parameters as JSON, empirical tables as exact float64/int64 tensors ------------------
    def extra_state(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "fit_stats": self.fit_stats,
            "last_variance": self.last_variance,
            "max_shock": self.max_shock if math.isfinite(self.max_shock) else None,
            "vol_edges": self.vol_edges.tolist(),
            "shock_edges": self.shock_edges.tolist(),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        try:
            params = state["params"]
            self.params = None if params is None else {k: float(params[k]) for k in _PARAMS}
            self.fit_stats = dict(state.get("fit_stats", {}))
            self.last_variance = float(state["last_variance"])
            cap = state.get("max_shock")
            self.max_shock = math.inf if cap is None else float(cap)
            self.vol_edges = np.asarray(state["vol_edges"], dtype=np.float64)
            self.shock_edges = np.asarray(state["shock_edges"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the garch checkpoint state is incomplete or malformed ({exc!r})") from exc

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "tables.aux_rows": torch.from_numpy(np.ascontiguousarray(self.aux_rows, dtype=np.float64)),
            "tables.cell_start": torch.from_numpy(self.cell_start.astype(np.int64)),
            "tables.cell_count": torch.from_numpy(self.cell_count.astype(np.int64)),
            "tables.fitted_sigma": torch.from_numpy(np.ascontiguousarray(self.fitted_sigma, dtype=np.float64)),
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        try:
            aux = tensors["tables.aux_rows"].numpy().astype(np.float64)
            start = tensors["tables.cell_start"].numpy().astype(np.int64)
            count = tensors["tables.cell_count"].numpy().astype(np.int64)
            sigma = tensors["tables.fitted_sigma"].numpy().astype(np.float64)
        except KeyError as exc:
            raise ModelError(f"the garch checkpoint lacks its empirical tables ({exc.args[0]})") from exc
        n_cells = self.config.vol_bins * self.config.shock_bins
        fitted = (
            aux.ndim == 2
            and aux.shape[1] == self.config.n_features - 1
            and sigma.ndim == 1
            and start.shape == count.shape == (n_cells,)
        )
        unfitted = start.size == count.size == sigma.size == 0
        if not (fitted or unfitted):
            raise ModelError("the garch checkpoint tables do not fit this model's config")
        self.aux_rows, self.cell_start, self.cell_count, self.fitted_sigma = aux, start, count, sigma

