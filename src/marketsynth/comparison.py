"""Several models on one chronological split under one time budget each: the table behind ``marketsynth compare``.

Every model trains on the same bars (by default the first 80 %; see ``pipeline.split_bars``) for at most
``budget_seconds`` (``pipeline.train_model``), samples as many windows as there are held-out real windows, and is
evaluated against those held-out windows. One row per
model (for the first seed); the columns summarise ``evaluate``'s records, lower is better unless said:

* **TSTR ratio** (higher is better, 1 = as useful as real data): the mean over the TSTR targets (next-bar
  direction, volatility) of accuracy(train on synthetic, test on real) / accuracy(train on real, test on real).
* **distribution fidelity**: the mean of the distribution distances of close returns: the KL divergence of
  per-bar returns and the Wasserstein-1 distances (in real standard deviations) of returns summed over 1, 4 and
  24 bars (the aggregational-Gaussianity records that the window length allows). 0 = same distributions.
* **temporal coherence**: the volatility-clustering distance (mean over lags of |ACF(|r|) synthetic - real|)
  plus the linear-autocorrelation distance (the same for ACF(r)). 0 = same dependence over time.
* **discriminative** / **predictive**: the TimeGAN-paper scores (``evaluation.metrics``, default protocol):
  |accuracy - 0.5| of a post-hoc GRU telling synthetic from real, and the MAE of a next-bar forecaster trained on
  synthetic and tested on real (``predictive (real)``: the same trained on real windows, for scale).
* **memorization**: the share of synthetic windows closer to the training windows than 95 % of held-out real
  windows are (about 5 % without copying).
* the **real (training period)** row: the discriminative score of the real training windows against the held-out
  ones. Markets change between the two periods, so this is about the best a model of the training period can
  score on this split; a model near it is as realistic as the training data itself.
* **training time**, epochs; **stability**: the standard deviation of the discriminative score over the seeds
  (``seed``, ``seed + 1``, ...); each seed trains and evaluates the model again from scratch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marketsynth import pipeline
from marketsynth.compute import torch_threads
from marketsynth.data.load import DataSource, MarketData, load, source_to_dict
from marketsynth.errors import ConfigError
from marketsynth.progress import Progress, or_silent
from marketsynth.rundir import run_directory

REFERENCE_ROW = "real (training period)"
COLUMNS = (  # key, heading, format
    ("model", "model", "{}"),
    ("tstr_ratio", "TSTR ratio ↑", "{:.3f}"),
    ("fidelity", "distribution fidelity ↓", "{:.3f}"),
    ("coherence", "temporal coherence ↓", "{:.3f}"),
    ("discriminative", "discriminative ↓", "{:.3f}"),
    ("predictive", "predictive ↓", "{:.4f}"),
    ("predictive_real", "predictive (real)", "{:.4f}"),
    ("memorization", "memorization", "{:.1%}"),
    ("train_seconds", "training s", "{:.0f}"),
    ("epochs", "epochs", "{}"),
    ("stability", "stability (std disc.)", "{:.3f}"),
)


def summarize(result) -> dict[str, float | None]:
    """The comparison's numbers from one ``EvaluationResult`` (definitions in the module docstring)."""
    records = {r.name: r for r in result.records}
    tstr = [r.details.get("ratio") for r in result.records if r.name.startswith("TSTR ")]
    distances = [records["KL divergence of returns"].distance] + [
        r.distance for r in result.records if r.name.startswith("aggregational Gaussianity")]
    coherence = [records[name].distance for name in ("volatility clustering", "linear autocorrelation")]
    discriminative = [r for r in result.records if r.name.startswith("discriminative score")]
    predictive = records["predictive score"]
    return {
        "tstr_ratio": _mean(tstr),
        "fidelity": _mean(distances),
        "coherence": None if None in coherence else float(sum(coherence)),
        "discriminative": discriminative[0].synthetic if discriminative else None,
        "discriminators": {r.name: r.synthetic for r in discriminative},
        "predictive": predictive.synthetic,
        "predictive_real": predictive.real,
        "memorization": records["memorization"].synthetic,
        "memorization_flagged": bool(records["memorization"].details.get("flagged")),
        "volatility_clustering": coherence[0],
        "linear_acf": coherence[1],
        "leverage": records["leverage effect"].distance,
        "tail_index": records["tail index (Hill)"].distance,
        "kl": records["KL divergence of returns"].distance,
    }


@dataclass
class Comparison:
    rows: list[dict[str, Any]]  # one per model, first seed, with "stability"
    runs: list[dict[str, Any]]  # every model x seed
    meta: dict[str, Any] = field(default_factory=dict)
    results: dict[tuple[str, int], Any] = field(default_factory=dict, repr=False)  # (model, seed) -> evaluation

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "rows": self.rows, "runs": self.runs,
                "definitions": {key: text for key, text in _DEFINITIONS.items()}}

    def to_markdown(self) -> str:
        head = [heading for _, heading, _ in COLUMNS]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for row in self.rows:
            lines.append("| " + " | ".join(_cell(row.get(key), fmt) for key, _, fmt in COLUMNS) + " |")
        m = self.meta
        intro = (f"# marketsynth compare: {m['data']}\n\nTrained on {m['train']}; evaluated on {m['test']}; "
                 f"{_budget(m['budget_seconds'])}, seq_len {m['seq_len']}, seed {m['seed']} "
                 f"(stability over {m['seeds']} seed(s)). ↑ higher is better, ↓ lower is better.\n")
        notes = "\n".join(f"- **{key}**: {text}" for key, text in _DEFINITIONS.items())
        return intro + "\n" + "\n".join(lines) + "\n\n" + notes + "\n"

    def write(self, folder: Path) -> dict[str, Path]:
        """``comparison.md``, ``comparison.json`` and ``comparison.html`` in ``folder``."""
        from marketsynth import reports
        from marketsynth.data.io import atomic_path

        paths = {"md": folder / "comparison.md", "json": folder / "comparison.json"}
        for kind, text in (("md", self.to_markdown()), ("json", json.dumps(self.to_dict(), indent=2) + "\n")):
            with atomic_path(paths[kind]) as tmp:
                tmp.write_text(text, encoding="utf-8")
        summary = [["data", self.meta["data"]], ["trained on", self.meta["train"]],
                   ["evaluated on", self.meta["test"]], ["budget", _budget(self.meta["budget_seconds"])],
                   ["seeds", str(self.meta["seeds"])]]
        definitions = reports.Bullets([[reports.Strong(key), f": {text}"] for key, text in _DEFINITIONS.items()])
        page = reports.Page(f"marketsynth compare: {self.meta['data']}", [
            reports.Section("Summary", [reports.Table(summary)]),
            reports.Section("Comparison", [self._html_table(), reports.Figure(self._figure(), "comparison.png")]),
            reports.Section("Definitions", [definitions])])
        paths["html"] = reports.write_page(folder / "comparison.html", page)
        return paths

    def _html_table(self):
        """The comparison table as a page block (one row per model, the columns of ``COLUMNS``)."""
        from marketsynth.reports import Table

        rows = [[_cell(row.get(key), fmt) for key, _, fmt in COLUMNS] for row in self.rows]
        return Table(rows, [heading for _, heading, _ in COLUMNS], style="wide")

    def _figure(self) -> bytes:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from marketsynth.reports import figure_png

        keys = [("discriminative", "discriminative ↓"), ("fidelity", "distribution fidelity ↓"),
                ("coherence", "temporal coherence ↓"), ("tstr_ratio", "TSTR ratio ↑")]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.0))
        names = [row["model"] for row in self.rows]
        for ax, (key, title) in zip(axes, keys, strict=True):
            ax.bar(names, [row.get(key) or 0.0 for row in self.rows], color="#4c72b0")
            ax.set_title(title, fontsize=9)
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        fig.tight_layout()
        return figure_png(fig)  # closes the figure


_DEFINITIONS = {
    "TSTR ratio": "mean over next-bar direction and volatility of accuracy(trained on synthetic, tested on real) / "
                  "accuracy(trained on real, tested on real); 1 = synthetic data is as useful as real data",
    "distribution fidelity": "mean of the KL divergence of per-bar close returns and the Wasserstein-1 distances "
                             "(in real standard deviations) of returns summed over 1, 4 and 24 bars; 0 = same",
    "temporal coherence": "mean |ACF(|r|) synthetic - real| + mean |ACF(r) synthetic - real| over lags; 0 = same",
    "discriminative": "|accuracy - 0.5| of a post-hoc GRU telling synthetic from held-out real windows",
    "predictive": "MAE on real windows of a next-bar log-volume forecaster trained on synthetic windows "
                  "(predictive (real): trained on real training windows)",
    "memorization": "share of synthetic windows closer to the training windows than 95% of held-out real windows; "
                    "about 5% means no copying",
    "real (training period)": "the real training windows scored like a model's samples (discriminative only): "
                              "about the best a model of the training period can reach on this split",
    "stability": "standard deviation of the discriminative score over the seeds (each trains from scratch)",
}


def compare(data: MarketData, models: list[str], *, work: Path, budget_seconds: float | None, seed: int = 0,
            seeds: int = 1, seq_len: int = 24, repeats: int = 1, epochs: int | None = None,
            split: str = "chronological", discriminators=None, stages: Progress | None = None) -> Comparison:
    """Train, sample and evaluate every model for every seed under the same budget (None: the default epochs,
    each model's ``default_epochs``, or ``epochs``) on the same split; the checkpoints go to
    ``work/models/<model>-seed<N>/`` with their ``synthetic.csv`` and ``metrics.json``."""
    stages = or_silent(stages)
    names = check_models(models)
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    train_bars, test_bars = pipeline.split_bars(data.bars, seq_len=seq_len, split=split)
    described = pipeline.describe_split(data.bars, train_bars, test_bars, split)
    test_w = pipeline.real_windows(test_bars, seq_len, data.adjacent)
    train_w = pipeline.real_windows(train_bars, seq_len, data.adjacent)
    n = pipeline.default_num_samples(len(test_w))
    stages.start("models", len(names) * seeds, ", ".join(names))
    reference = pipeline.reference_scores(test_w, train_w, seed=seed, discriminators=discriminators, stages=stages)
    runs: list[dict[str, Any]] = []
    results: dict[tuple[str, int], Any] = {}
    for name in names:
        for run_seed in range(seed, seed + seeds):
            stages.advance("models", 0, f"{name} seed {run_seed}")
            folder = work / "models" / f"{name}-seed{run_seed}"
            folder.mkdir(parents=True, exist_ok=True)
            trained = pipeline.train_model(name, train_bars, out=folder / "checkpoint", adjacent=data.adjacent,
                                           seq_len=seq_len, epochs=epochs, budget_seconds=budget_seconds,
                                           seed=run_seed, stages=stages, source=source_to_dict(data.source))
            frame = pipeline.generate(trained.checkpoint, n, seed=run_seed, output=folder / "synthetic.csv",
                                      stages=stages)
            tic = time.perf_counter()
            result = pipeline.evaluate_windows(test_w, frame, train=train_w, seq_len=seq_len, seed=run_seed,
                                               repeats=repeats, discriminators=discriminators, stages=stages,
                                               label=f"{name} seed {run_seed}")
            result.to_json(folder / "metrics.json")
            results[(name, run_seed)] = result
            runs.append({"model": name, "seed": run_seed, "epochs": trained.epochs,
                         "planned_epochs": trained.planned_epochs, "train_seconds": round(trained.seconds, 1),
                         "stopped_by_budget": trained.stopped_by_budget,
                         "evaluate_seconds": round(time.perf_counter() - tic, 1), **summarize(result)})
            stages.advance("models", 1)
    rows = []
    for name in names:
        mine = [r for r in runs if r["model"] == name]
        scores = [r["discriminative"] for r in mine if r["discriminative"] is not None]
        rows.append({**mine[0], "stability": float(np.std(scores)) if len(scores) > 1 else None})
    first = next(iter(reference.values()))
    rows.append({"model": REFERENCE_ROW, "discriminative": first, "discriminators": reference})
    meta = {"data": data.label, "source": {**source_to_dict(data.source), **data.description}, "split": split,
            "train": described["train_text"],
            "test": described["test_text"], "test_windows": len(test_w), "samples": n,
            "budget_seconds": budget_seconds, "seed": seed, "seeds": seeds, "seq_len": seq_len, "repeats": repeats,
            "reference": reference}
    return Comparison(rows, runs, meta, results)


def check_models(models: list[str]) -> list[str]:
    """The registered names of ``models``; one-line errors for unknown, repeated or non-candle models."""
    from marketsynth.models.registry import candle_models, get_model_class

    names = [get_model_class(m).name for m in models]
    accepted = candle_models()
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"--models lists each model once, e.g. {','.join(accepted[:2])}; got "
                          f"{','.join(models) or 'none'}")
    refused = [n for n in names if n not in accepted]
    if refused:
        raise ConfigError(f"{', '.join(refused)} cannot be compared on candles; choose from {', '.join(accepted)}")
    return names


def run_compare(*, models: list[str], out: str | Path, source: DataSource, budget_seconds: float | None,
                seed: int = 0, seeds: int = 1, seq_len: int = 24, repeats: int = 1, epochs: int | None = None,
                split: str = "chronological", overwrite: bool = False, threads: int | None = 1,
                stages: Progress | None = None) -> tuple[Comparison, dict[str, Path]]:
    """``compare`` into a run directory ``out`` (``marketsynth.rundir``: refuses to replace an earlier one without
    ``overwrite`` and keeps it intact when the new one fails); returns the comparison and the paths of its three
    files. ``threads``: torch intra-op threads (``marketsynth.compute``)."""
    stages, out = or_silent(stages), Path(out)
    check_models(models)
    with run_directory(out, kind="compare", overwrite=overwrite) as run, torch_threads(threads):
        data = load(source, progress=stages)
        run.write(settings={"models": models, "budget_seconds": budget_seconds, "seed": seed, "seeds": seeds,
                            "seq_len": seq_len, "repeats": repeats, "epochs": epochs, "split": split},
                  source=source_to_dict(data.source), data=data.description)
        comparison = compare(data, models, work=run.work, budget_seconds=budget_seconds, seed=seed, seeds=seeds,
                             seq_len=seq_len, repeats=repeats, epochs=epochs, split=split, stages=stages)
        stages.start("report", 1, "comparison.md, .json, .html")
        comparison.write(run.work)
        stages.finish("report", "comparison.md, .json, .html")
    return comparison, {k: out / f"comparison.{k}" for k in ("md", "json", "html")}


def _budget(seconds: float | None) -> str:
    return "default epochs per model" if seconds is None else f"budget {seconds:.0f} s per model"


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def _cell(value, fmt: str) -> str:
    if value is None:
        return "n/a"
    return fmt.format(value)
