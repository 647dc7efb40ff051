"""The report's figures: matplotlib figures built from candle windows, return samples and training history.

Every function returns a ``Figure`` (``report.figure_png`` renders and closes it) and uses the same colours:
real data blue, synthetic data orange. Figures are sized for a page about 1,200 px wide and say in their
titles what a reader should look for, because the report is read by people who do not know the metrics.
"""

from __future__ import annotations

import functools
import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

REAL, SYNTHETIC = "#1f5fa8", "#e8731a"
UP, DOWN = "#26a69a", "#ef5350"
PHASE_COLOURS = ("#ececec", "#dde8f5", "#ffffff")  # TimeGAN's embedding, supervised, joint phases
MAX_CANDLES = 96  # bars drawn per window; longer windows show their start
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False}


def _styled(build):
    """Build under the report's style without touching the caller's global matplotlib settings (or pyplot)."""
    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return build(*args, **kwargs)
    return wrapper


def _figure(width: float, height: float) -> Figure:
    """A figure outside pyplot: no backend, nothing to close, safe in servers and threads."""
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _pick(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=min(k, n), replace=False))


def _draw_candles(ax, candles: np.ndarray) -> None:
    """Bodies as rectangles, wicks as lines; rising bars green, falling red (hollow for invalid candles)."""
    for t, (o, h, low, c) in enumerate(candles[:, :4]):
        colour = UP if c >= o else DOWN
        ax.vlines(t, low, h, color=colour, linewidth=0.8)
        body = max(abs(c - o), 1e-9 * max(abs(o), 1.0))
        ax.add_patch(Rectangle((t - 0.35, min(o, c)), 0.7, body, facecolor=colour, edgecolor=colour, linewidth=0.6))
    ax.set_xlim(-0.8, len(candles) - 0.2)


@_styled
def candlestick_grid(real: np.ndarray, synthetic: np.ndarray, *, per_row: int = 4, seed: int = 0):
    """A few randomly picked real windows (top) and synthetic windows (bottom) as candlesticks with volume.

    Prices are rebased to 100 at each window's first open and every price panel shares one y-range, so the
    size of the moves compares at a glance whatever the price level (BTC at 9,000 or 60,000).
    """
    rng = np.random.default_rng(seed)
    sets = [("Real", REAL, real[_pick(len(real), per_row, rng)]),
            ("Synthetic", SYNTHETIC, synthetic[_pick(len(synthetic), per_row, rng)])]
    columns = max(len(windows) for _, _, windows in sets)
    fig = _figure(14, 7.2)
    grid = fig.add_gridspec(4, columns, height_ratios=[3, 1, 3, 1])
    rebased = [(label, colour, windows[:, :MAX_CANDLES].copy()) for label, colour, windows in sets]
    for _, _, windows in rebased:
        base = windows[:, :1, 0:1]
        windows[..., :4] = 100 * windows[..., :4] / np.where(np.abs(base) > 0, base, 1.0)
    prices = np.concatenate([w[..., :4].ravel() for _, _, w in rebased])
    low, high = np.nanmin(prices), np.nanmax(prices)
    pad = 0.05 * (high - low or 1.0)
    top_volume = max(float(np.nanmax(w[..., 4])) for _, _, w in rebased) * 1.05 or 1.0
    price_axes, volume_axes = [], []
    for row, (label, colour, windows) in enumerate(rebased):
        for col, window in enumerate(windows):
            ax = fig.add_subplot(grid[2 * row, col])
            vol = fig.add_subplot(grid[2 * row + 1, col], sharex=ax)
            _draw_candles(ax, window)
            ax.set_ylim(low - pad, high + pad)
            ax.tick_params(labelbottom=False)
            ax.grid(axis="y", alpha=0.3)
            ax.set_title(f"{label} window {col + 1}", color=colour, fontweight="bold", loc="left")
            vol.bar(np.arange(len(window)), window[:, 4], width=0.7, color=colour, alpha=0.6)
            vol.set_ylim(0, top_volume)
            vol.yaxis.set_major_formatter(EngFormatter(sep=""))
            vol.yaxis.set_major_locator(MaxNLocator(2))
            vol.set_xlabel("bar")
            if col == 0:
                ax.set_ylabel("price (first open = 100)")
                vol.set_ylabel("volume")
            else:
                ax.tick_params(labelleft=False)
                vol.tick_params(labelleft=False)
            price_axes.append(ax)
            volume_axes.append(vol)
    shown = min(real.shape[1], MAX_CANDLES)
    extra = f" (first {shown} of {real.shape[1]} bars)" if real.shape[1] > shown else ""
    fig.suptitle(f"Sample windows{extra}: {len(rebased[0][2])} real (blue titles) and {len(rebased[1][2])} "
                 f"synthetic (orange titles), picked at random; all price panels share one scale", fontsize=11)
    return fig


def _percent(returns) -> np.ndarray:
    values = 100 * np.ravel(np.asarray(returns, dtype=np.float64))
    return values[np.isfinite(values)]


@_styled
def return_distribution(real_returns, synthetic_returns):
    """Histogram of per-bar returns (linear), the same on a log scale to show the tails, and a QQ plot."""
    real, synthetic = _percent(real_returns), _percent(synthetic_returns)
    fig = _figure(14, 4.2)
    body_ax, tail_ax, qq_ax = fig.subplots(1, 3)
    low, high = np.quantile(real, [0.005, 0.995])
    bins = np.linspace(low, high, 60)
    for values, colour, label, style in ((real, REAL, "real", "stepfilled"), (synthetic, SYNTHETIC, "synthetic",
                                                                               "step")):
        body_ax.hist(values[(values >= low) & (values <= high)], bins, density=True, histtype=style, color=colour,
                     alpha=0.35 if style == "stepfilled" else 1.0, linewidth=1.5, label=label)
    body_ax.set(title="Typical moves: returns per bar (middle 99% of real)", xlabel="return per bar (%)",
                ylabel="density")
    body_ax.legend(frameon=False)
    everything = np.concatenate([real, synthetic])
    wide = np.linspace(everything.min(), everything.max(), 80) if everything.max() > everything.min() else 10
    for values, colour, label, style in ((real, REAL, "real", "stepfilled"), (synthetic, SYNTHETIC, "synthetic",
                                                                               "step")):
        tail_ax.hist(values, wide, density=True, histtype=style, color=colour,
                     alpha=0.35 if style == "stepfilled" else 1.0, linewidth=1.5, label=label, log=True)
    tail_ax.set(title="Extreme moves: all returns, log scale", xlabel="return per bar (%)",
                ylabel="density (log scale)")
    tail_ax.legend(frameon=False)
    probabilities = np.linspace(0.001, 0.999, 199)
    real_q, synthetic_q = np.quantile(real, probabilities), np.quantile(synthetic, probabilities)
    qq_ax.scatter(real_q, synthetic_q, s=9, color=SYNTHETIC, zorder=3, label="quantiles 0.1% ... 99.9%")
    lo, hi = min(real_q.min(), synthetic_q.min()), max(real_q.max(), synthetic_q.max())
    qq_ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, label="identical distributions")
    for q in np.quantile(real, [0.01, 0.99]):
        qq_ax.axvline(q, color=REAL, alpha=0.3, linestyle=":")
    qq_ax.set(title="QQ plot: on the grey line = same distribution",
              xlabel="real return quantile (%)  (dotted: real 1% / 99%)", ylabel="synthetic return quantile (%)")
    qq_ax.legend(frameon=False, loc="upper left")
    return fig


@_styled
def dependence(real: dict, synthetic: dict, n_real_returns: int):
    """ACF of returns, ACF of absolute returns (volatility clustering) and the leverage effect over lags.

    The grey band is +-1.96 / sqrt(n): where a white-noise series of the real data's size would fall 95 % of
    the time, so values inside it are indistinguishable from zero.
    """
    fig = _figure(14, 3.9)
    axes = fig.subplots(1, 3)
    band = 1.96 / math.sqrt(max(n_real_returns, 1))
    panels = (("acf", "Returns: autocorrelation (real markets: near 0)"),
              ("acf_abs", "|Returns|: volatility clustering (real: positive, slowly decaying)"),
              ("leverage", "Leverage: corr(r now, r² later) (real: often negative)"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        lags = np.asarray(real["lags"])
        ax.axhspan(-band, band, color="grey", alpha=0.15, label="noise band (95%)")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.plot(lags, real[key], "o-", color=REAL, markersize=3, label="real")
        ax.plot(np.asarray(synthetic["lags"]), synthetic[key], "s--", color=SYNTHETIC, markersize=3,
                label="synthetic")
        ax.set(title=title, xlabel="lag (bars)", ylabel="correlation")
        ax.grid(alpha=0.3)
    axes[0].legend(frameon=False, fontsize=8)
    return fig


@_styled
def diagnosis_curves(acfs: dict, daily: dict | None = None):
    """The diagnosis's ACFs of |returns| and of relative volume over lags, real vs synthetic; with ``daily``
    profiles (``diagnosis.daily_profile`` per side) also mean log volume and mean |return| by hour of the day."""
    profiles = [key for key in ("volume", "abs_ret") if daily and daily.get("real") is not None]
    fig = _figure(14, 3.6 * (2 if profiles else 1))
    axes = np.atleast_1d(fig.subplots(2 if profiles else 1, 2, squeeze=False)).ravel()
    lags = np.asarray(acfs["lags"])
    for ax, (key, title) in zip(axes, (("abs_ret", "|Returns|: autocorrelation over lags"),
                                       ("volume", "Relative volume: autocorrelation over lags")), strict=False):
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.plot(lags, acfs[key]["real"], "o-", color=REAL, markersize=3, label="real")
        ax.plot(lags, acfs[key]["synthetic"], "s--", color=SYNTHETIC, markersize=3, label="synthetic")
        ax.set(title=title, xlabel="lag (bars)", ylabel="correlation")
        ax.grid(alpha=0.3)
    axes[0].legend(frameon=False, fontsize=8)
    titles = {"volume": "Mean log(1 + volume) by position in the day",
              "abs_ret": "Mean |return| by position in the day"}
    for ax, key in zip(axes[2:], profiles, strict=False):
        hours = np.arange(len(daily["real"][key]))
        ax.plot(hours, daily["real"][key], "o-", color=REAL, markersize=3, label="real")
        if daily.get("synthetic") is not None:
            ax.plot(hours, daily["synthetic"][key], "s--", color=SYNTHETIC, markersize=3, label="synthetic")
        ax.set(title=titles[key], xlabel="bar of the day (UTC)", ylabel="mean")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    return fig


@_styled
def embedding(real: dict[str, np.ndarray], synthetic: dict[str, np.ndarray], captions: dict[str, str]):
    """Scatter plots of 2-D embeddings (``{"PCA": xy, "t-SNE": xy}``) of real and synthetic windows."""
    fig = _figure(6.5 * len(real), 5.6)
    axes = np.atleast_1d(fig.subplots(1, len(real)))
    for ax, name in zip(axes, real, strict=True):
        outside = _robust_view(ax, np.concatenate([real[name], synthetic[name]]))
        caption = captions[name] + (f"\n{outside} outlying windows lie outside the view" if outside else "")
        ax.scatter(*real[name].T, s=7, alpha=0.45, color=REAL, label=f"real ({len(real[name])})", linewidths=0)
        ax.scatter(*synthetic[name].T, s=7, alpha=0.45, color=SYNTHETIC, label=f"synthetic ({len(synthetic[name])})",
                   linewidths=0)
        ax.set(title=caption, xticks=[], yticks=[])
        ax.legend(frameon=False, markerscale=2.5, loc="best")
    return fig


def _robust_view(ax, xy: np.ndarray) -> int:
    """Limit the view to the central 99% of points (plus a margin) so a few outliers cannot squash the cloud;
    returns how many points fall outside."""
    low, high = np.quantile(xy, 0.005, axis=0), np.quantile(xy, 0.995, axis=0)
    margin = 0.15 * np.where(high > low, high - low, 1.0)
    low, high = low - margin, high + margin
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    return int((((xy < low) | (xy > high)).any(axis=1)).sum())


@_styled
def memorization(synthetic: np.ndarray, heldout: np.ndarray, threshold: float, relative: bool):
    """How close synthetic and new real windows come to the training windows, with the copying threshold."""
    fig = _figure(9, 3.6)
    ax = fig.subplots()
    values = np.concatenate([synthetic, heldout])
    positive = values[values > 0]
    floor = positive.min() if len(positive) else 1e-6
    bins = np.geomspace(floor, max(values.max(), floor * 10), 50)
    ax.hist(np.maximum(heldout, floor), bins, density=True, histtype="stepfilled", color=REAL, alpha=0.35,
            label="new real windows (held out)")
    ax.hist(np.maximum(synthetic, floor), bins, density=True, histtype="step", color=SYNTHETIC, linewidth=1.5,
            label="synthetic windows")
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label="closest 5% of new real windows")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    what = "relative distance (÷ local spacing of training windows)" if relative else "distance"
    ax.set(title="Distance to the nearest training window: synthetic mass left of the dashed line = copying",
           xlabel=f"{what}, log scale", ylabel="density")
    ax.legend(frameon=False)
    return fig


@_styled
def training_curves(epochs: np.ndarray, series: dict[str, np.ndarray], phases: list[tuple[str, float, float]]):
    """One panel per logged value over epochs; TimeGAN's phases shaded and named in every panel."""
    columns = min(3, len(series))
    rows = math.ceil(len(series) / columns)
    fig = _figure(14, 2.9 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    few = len(epochs) <= 30
    for ax, (key, values) in zip(axes, series.items(), strict=False):
        for i, (name, start, end) in enumerate(phases):
            ax.axvspan(start, end, color=PHASE_COLOURS[i % len(PHASE_COLOURS)], zorder=0)
            ax.text((start + end) / 2, 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=7, color="#555555")
        ax.plot(epochs, values, "o-" if few else "-", color=REAL, markersize=3, linewidth=1.2)
        finite = values[np.isfinite(values)]
        log = len(finite) > 1 and finite.min() > 0 and finite.max() / finite.min() > 100
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{key}{' (log scale)' if log else ''}", pad=14 if phases else 4)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[len(series):]:
        ax.set_visible(False)
    return fig
