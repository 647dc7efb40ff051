"""The report's analysis sections: the data behind each figure (PCA, t-SNE, training history) and its text.

Each builder returns a ``reports.Section`` of page blocks. Plots use ``EvaluationResult.curves`` when there is a result
(the same numbers the metrics saw) and fall back to computing from the candle windows for a report without one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from marketsynth.errors import DataError, ModelError
from marketsynth.evaluation import plots
from marketsynth.evaluation.formatting import number
from marketsynth.evaluation.inputs import FeatureScaler, check_windows, subsample, window_features, window_returns
from marketsynth.evaluation.records import EvaluationResult
from marketsynth.evaluation.stylized import stylized_profile
from marketsynth.reports import Figure, Paragraph, Section, Table, figure_png

PCA_WINDOWS = 1000  # per set: enough to see the shape of the cloud, quick to draw
TSNE_WINDOWS = 500  # per set: t-SNE on 1,000 points takes a few seconds on one core
NOT_PLOTTED = ("epoch", "seconds", "phase")


def analysis_sections(result: EvaluationResult | None, real_windows, synthetic_windows,
                      notes: list[str]) -> list[Section]:
    """Sample paths, return distribution, dependence, embeddings and memorization, as far as the inputs allow."""
    real = None if real_windows is None else check_windows(real_windows, "real windows")
    synthetic = None if synthetic_windows is None else check_windows(synthetic_windows, "synthetic windows")
    seed = result.seed if result is not None else 0
    curves = result.curves if result is not None else {}
    out = []
    if real is not None and synthetic is not None:
        out.append(sample_paths_section(real, synthetic, seed))
    returns = curves.get("returns")
    if returns is None and real is not None and synthetic is not None:
        returns = {"real": window_returns(real), "synthetic": window_returns(synthetic)}
    if returns is not None:
        out.append(distribution_section(returns["real"], returns["synthetic"]))
    profiles = curves.get("stylized")
    n_returns = result.n_real * result.seq_len if result is not None else 0
    if profiles is None and real is not None and synthetic is not None and min(real.shape[1],
                                                                               synthetic.shape[1]) >= 3:
        profiles = {"real": stylized_profile(window_returns(real)),
                    "synthetic": stylized_profile(window_returns(synthetic))}
    if real is not None:
        n_returns = real.shape[0] * real.shape[1]
    if profiles is not None:
        out.append(dependence_section(profiles, n_returns))
    if real is not None and synthetic is not None:
        if real.shape[1] == synthetic.shape[1]:
            out.append(embedding_section(real, synthetic, seed))
        else:
            notes.append(f"no PCA / t-SNE: real windows have {real.shape[1]} bars, synthetic ones "
                         f"{synthetic.shape[1]}")
    if "memorization" in curves:
        out.append(memorization_section(curves["memorization"]))
    return out


def sample_paths_section(real: np.ndarray, synthetic: np.ndarray, seed: int) -> Section:
    text = ("Candlesticks of a few real and synthetic windows: each bar's body spans open to close (green "
            "when the price rose, red when it fell) and the thin wick spans low to high; volume below. Prices "
            "are rebased to 100 at the first open of each window, and all panels share one price scale, so a "
            "synthetic window that moves more or less than real ones stands out.")
    figure = figure_png(plots.candlestick_grid(real, synthetic, seed=seed))
    return Section("Sample paths", [Paragraph(text), Figure(figure, "sample_paths.png")])


def distribution_section(real_returns, synthetic_returns) -> Section:
    real, synthetic = np.ravel(real_returns), np.ravel(synthetic_returns)
    text = ("Per-bar close-to-close log returns (in %, roughly the percentage move). Left: the bulk of the "
            "moves; middle: every move on a log scale, where the rare large moves (the tails) become visible; "
            "right: quantiles of synthetic against real returns, which lie on the grey line when the two "
            "distributions are the same. Real crypto returns have fat tails: the outer points of a good generator "
            "follow the line.")
    return Section("Return distribution", [Paragraph(text), Table(_moments(real, synthetic), ["", "real", "synthetic"]),
                                           Figure(figure_png(plots.return_distribution(real, synthetic)),
                                                  "returns.png")])


def _moments(real: np.ndarray, synthetic: np.ndarray) -> list[list[str]]:
    def row(label, f, fmt):
        return [label, fmt(f(real)), fmt(f(synthetic))]

    pct = lambda x: f"{100 * x:+.3f}%"  # noqa: E731 - table formatters
    return [row("returns in the sample", len, lambda n: f"{n:,}"),
            row("1% quantile", lambda x: np.quantile(x, 0.01), pct),
            row("median", np.median, pct),
            row("99% quantile", lambda x: np.quantile(x, 0.99), pct),
            row("largest fall", np.min, pct),
            row("largest rise", np.max, pct)]


def dependence_section(profiles: dict, n_real_returns: int) -> Section:
    text = ("How a move relates to the moves after it, inside each window (lag = bars later). Real markets "
            "show almost no linear autocorrelation (left: direction is hard to predict), strong volatility "
            "clustering (middle: large moves follow large moves, so the autocorrelation of the move sizes is "
            "positive and decays slowly) and often a leverage effect (right: falls are followed by higher "
            "volatility). Synthetic curves should follow the real ones; the grey band shows where pure noise "
            "would land.")
    figure = figure_png(plots.dependence(profiles["real"], profiles["synthetic"], n_real_returns))
    return Section("Autocorrelation and volatility clustering", [Paragraph(text), Figure(figure, "dependence.png")])


def embedding_section(real: np.ndarray, synthetic: np.ndarray, seed: int) -> Section:
    """PCA (fitted on real windows) and t-SNE of flattened window features, real data's scaling."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    real_f, synthetic_f = window_features(real), window_features(synthetic)
    scale = FeatureScaler(real_f)
    real_x, synthetic_x = (_flat(scale(subsample(f, PCA_WINDOWS, rng))) for f in (real_f, synthetic_f))
    components = min(2, len(real_x))
    pca = PCA(components, random_state=seed).fit(real_x)
    ratio = np.pad(pca.explained_variance_ratio_, (0, 2 - components))
    real_xy, synthetic_xy = {"PCA": _two(pca.transform(real_x))}, {"PCA": _two(pca.transform(synthetic_x))}
    captions = {"PCA": f"PCA fitted on real windows (the two axes hold {ratio[0]:.0%} and {ratio[1]:.0%} of their "
                       "variance)"}
    real_t, synthetic_t = subsample(real_x, TSNE_WINDOWS, rng), subsample(synthetic_x, TSNE_WINDOWS, rng)
    if len(real_t) + len(synthetic_t) >= 12:
        both = _tsne(np.concatenate([real_t, synthetic_t]), seed)
        real_xy["t-SNE"], synthetic_xy["t-SNE"] = both[: len(real_t)], both[len(real_t):]
        captions["t-SNE"] = f"t-SNE of {len(real_t)} real and {len(synthetic_t)} synthetic windows"
    text = ("Every dot is one window, described by all its bars' scale-free features (return, gap, wicks, "
            "volume), squeezed into two dimensions. Synthetic dots (orange) should spread over the same area as "
            "real ones (blue): orange dots bunched in one spot mean the generator repeats a few patterns (mode "
            "collapse); orange dots far from every blue one are windows unlike anything real. t-SNE keeps "
            "neighbourhoods but not distances, so judge overlap there, not cluster sizes.")
    figure = figure_png(plots.embedding(real_xy, synthetic_xy, captions))
    return Section("Windows side by side: PCA and t-SNE", [Paragraph(text), Figure(figure, "embedding.png")])


def _flat(windows: np.ndarray) -> np.ndarray:
    return windows.reshape(len(windows), -1)


def _two(xy: np.ndarray) -> np.ndarray:
    """Pad a 1-D embedding (PCA of a single real window) to two columns."""
    return np.column_stack([xy, np.zeros((len(xy), 2 - xy.shape[1]))])


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    """t-SNE on one thread: sklearn's default thread pools thrash when the cores are shared (10x slower)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, (len(x) - 1) / 3))
    with threadpool_limits(1):
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500).fit_transform(x)


def memorization_section(memo: dict) -> Section:
    text = ("For each synthetic window and for real windows the model never saw, the distance to the nearest "
            "window of the training data. A generator that learned the market puts its windows as close to the "
            "training data as new real windows are; one that copies puts many of them left of the dashed line "
            "(closer than 95% of new real windows ever get).")
    figure = plots.memorization(np.asarray(memo["synthetic"]), np.asarray(memo["heldout"]), float(memo["threshold"]),
                                bool(memo.get("relative", True)))
    return Section("Privacy: does the generator copy?", [Paragraph(text),
                                                         Figure(figure_png(figure), "memorization.png")])


# ---- training ------------------------------------------------------------------------------------------------
def training_section(model_dir: Path, notes: list[str]) -> Section:
    """The model's settings and data (``config.json``, ``meta.json``) and its loss curves (``history.csv``)."""
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} not found; pass the checkpoint folder written by "
                         "'marketsynth train'")
    config, meta = _json(model_dir / "config.json"), _json(model_dir / "meta.json")
    history_path = model_dir / "history.csv"
    if config is None and not history_path.is_file():
        raise ModelError(f"{model_dir} is not a marketsynth checkpoint (no config.json or history.csv)")
    blocks: list = [Table(_model_rows(config or {}, meta or {}))]
    history = _history(history_path)
    if history is None:
        notes.append(f"no training curves: {history_path} is missing or has no rows")
    elif "epoch" not in history.columns:  # fitted in one pass (GARCH): a table of fit statistics
        blocks.append(Paragraph("Fitted in one pass (no epochs); fit statistics:"))
        blocks.append(Table([[k, _cell(v)] for k, v in history.iloc[-1].items()], ["statistic", "value"]))
    else:
        epochs = history["epoch"].to_numpy(dtype=float)
        series = {c: pd.to_numeric(history[c], errors="coerce").to_numpy(dtype=float) for c in history.columns
                  if c not in NOT_PLOTTED}
        series = {k: v for k, v in series.items() if np.isfinite(v).any()}
        phases = _phases(history, epochs)
        figure = None
        if series:
            figure = Figure(figure_png(plots.training_curves(epochs, series, phases)), "training_curves.png")
            last = [[k, number(float(v[np.isfinite(v)][-1]))] for k, v in series.items()]
            blocks.append(Paragraph(
                "Values logged at the end of every epoch (mean over the epoch's batches). GAN losses need not fall "
                "steadily: a generator and a critic that balance each other give flat, noisy curves; a loss that "
                "shoots off or collapses to 0 is the warning sign."
                + (" Shaded bands are TimeGAN's training phases: the autoencoder first (embedding), then the "
                   "supervisor (supervised), then everything together (joint)." if phases else "")))
            blocks.append(Table(last, ["logged value", "last epoch"]))
        if "seconds" in history.columns:
            total = pd.to_numeric(history["seconds"], errors="coerce").sum()
            blocks.append(Paragraph(f"Training time: {total:,.0f} s over {len(history)} epochs."))
        if figure is not None:
            blocks.append(figure)  # figures come after the section's text, as in every section
    return Section("Training", blocks)


def _json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is unreadable ({exc}); the checkpoint is damaged") from exc


def _history(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is unreadable ({exc}); the checkpoint is damaged") from exc
    return None if frame.empty else frame


def _model_rows(config: dict, meta: dict) -> list[list[str]]:
    training = config.get("training") or {}
    model_config = config.get("model_config") or {}
    source = meta.get("file") or " ".join(str(meta[k]) for k in ("exchange", "symbol", "interval") if meta.get(k))
    rows = [["model", config.get("model", "?")],
            ["epochs trained", config.get("epoch")],
            ["window length (bars)", model_config.get("seq_len")],
            ["representation", training.get("representation") or meta.get("representation")],
            ["trained on", source or None],
            ["period (UTC)", f"{_when(meta['start'])} → {_when(meta['end'])}" if meta.get("start") and meta.get("end")
             else None],
            ["training windows", meta.get("windows")],
            ["seed", meta.get("seed")],
            ["created", _when(meta["created"]) if meta.get("created") else None]]
    return [[k, _cell(v)] for k, v in rows if v not in (None, "")]


def _when(value) -> str:
    """An ISO time as ``2023-01-01 00:00 UTC`` (unchanged when it is not a time)."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return str(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC")
    return f"{stamp:%Y-%m-%d %H:%M} UTC"


def _cell(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return number(value) if math.isfinite(value) else "—"
    return str(value)


def _phases(history: pd.DataFrame, epochs: np.ndarray) -> list[tuple[str, float, float]]:
    """Consecutive runs of TimeGAN's ``phase`` column as (name, first epoch - 0.5, last epoch + 0.5)."""
    if "phase" not in history.columns:
        return []
    from marketsynth.models.timegan import PHASES

    values = pd.to_numeric(history["phase"], errors="coerce").to_numpy()
    out: list[tuple[str, float, float]] = []
    for i, value in enumerate(values):
        if not np.isfinite(value):
            continue
        index = int(value)
        name = PHASES[index] if 0 <= index < len(PHASES) else f"phase {index}"
        if out and out[-1][0] == name:
            out[-1] = (name, out[-1][1], epochs[i] + 0.5)
        else:
            out.append((name, epochs[i] - 0.5, epochs[i] + 0.5))
    return out
