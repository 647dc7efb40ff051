"""Quality benchmark: every candle model against the real-vs-real floor on BTCUSDT 1h (results in BENCHMARKS.md).

    python benchmarks/quality.py [--csv ../shared/data/BTCUSDT_1h.csv] [--days 365] [--end 2022-06-29T20:00]
                                 [--budget-minutes 2] [--floor-repeats 4] [--no-diagnose]
                                 [--repeats 2] [--models dcgan,wgan-gp,timegan,garch] [--split interleaved]
                                 [--out runs/bench-quality]

Protocol (evaluation's ``default`` protocol, windows of 24 bars, the last ``--days`` of the file):

* **floor**: ``real_vs_real_floor``: real windows in alternating 10-day chunks (240 bars) against each other,
  with the three ``BENCHMARK_DISCRIMINATORS`` (GRU on all bar features, a wider GRU with hidden 32, a GRU on
  close returns only), repeated ``--floor-repeats`` times with the chunk boundaries shifted (phases spread over
  one chunk) and another seed each: the row is their mean, ``±`` its spread (2 standard deviations over the
  repeats). The best a generator can hope for. Volume enters every discriminator relative to its window's mean
  (``evaluation.inputs.window_features``), so no classifier wins by learning a month's volume level.
* **models**: ``marketsynth.comparison.compare`` with default settings: each model trains on 80 % of the bars
  for at most ``--budget-minutes`` of wall-clock (epochs planned to fit; 0: ``run``'s default epochs), samples
  as many windows as there are held-out windows, and is evaluated against the held-out 20 %.
  ``--split interleaved`` (the default here) holds out every fifth 10-day chunk, so training and held-out
  windows span the same regimes, as the floor's two sides do; ``chronological`` holds out the last 20 % (what
  ``marketsynth compare`` does by default).
* **real (training period)**: the real training windows against the held-out ones (discriminators only):
  what a perfect model of the training period would score on this split, since markets change over time.
* **i.i.d. Gaussian**: per-bar features (gap, return, wicks, log volume) drawn independently from normal
  distributions with the training data's means and standard deviations, decoded to candles: a scale for how
  bad "knows the marginal moments, nothing else" is.

Stylized-fact score: the mean, over the tail index, volatility clustering, linear autocorrelation, leverage and
aggregational Gaussianity (1, 4, 24 bars) records, of distance / that metric's "good" limit
(``evaluation.records.VERDICT_RULES``): 1 = at the limit of "good" on average, lower is better.

Targets: the default model (autoregressive) within the floor + its spread on all three discriminators, no copying
(memorization share about 5 %, not flagged) and a lower stylized-fact score than GARCH; each GAN (dcgan, wgan-gp,
timegan, cgan) at most 0.30 on all features and 0.15 on returns alone (GARCH's level) with no copying.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from marketsynth import comparison, pipeline
from marketsynth.data.io import read_bars_file
from marketsynth.data.load import FileSource, load
from marketsynth.evaluation import BENCHMARK_DISCRIMINATORS, real_vs_real_floor
from marketsynth.evaluation.diagnosis import diagnose, real_clock
from marketsynth.evaluation.records import VERDICT_RULES
from marketsynth.representation import make_representation
from marketsynth.rundir import run_directory

STYLIZED = {"tail index (Hill)": "hill", "volatility clustering": "volatility_clustering",
            "linear autocorrelation": "linear_acf", "leverage effect": "leverage",
            "aggregational Gaussianity": "aggregation"}
DISC = [f"discriminative score ({d.name})" for d in BENCHMARK_DISCRIMINATORS]
DISC_SHORT = ["disc. all features", "disc. wide GRU", "disc. returns only"]
CHUNK = 240  # bars per floor chunk: 10 days of 1h bars
GANS = ("dcgan", "wgan-gp", "timegan", "cgan")
GAN_TARGET = (0.30, 0.15)  # all features, returns only


def floor_phases(repeats: int) -> list[int]:
    """Chunk-boundary shifts spread evenly over one chunk, one per floor repeat."""
    return [k * CHUNK // repeats for k in range(max(1, repeats))]


def floor_with_spread(runs: list[dict]) -> tuple[dict, dict]:
    """The floor row (mean over the repeats) and its spread: 2 standard deviations over the repeats."""
    numeric = [key for key, value in runs[0].items() if isinstance(value, float)]
    floor = {"row": f"floor (real vs real, 10-day chunks, {len(runs)} phases)", "kind": "floor",
             **{key: float(np.mean([run[key] for run in runs])) for key in numeric}}
    spread = {key: 2 * float(np.std([run[key] for run in runs], ddof=1)) if len(runs) > 1 else 0.0
              for key in DISC_SHORT}
    floor["spread"] = spread
    floor["runs"] = {key: [run[key] for run in runs] for key in DISC_SHORT}
    return floor, spread


def stylized_score(result) -> float:
    """Mean of distance / 'good' limit over the stylized-fact records that could be measured."""
    ratios = [r.distance / VERDICT_RULES[rule][0] for r in result.records for prefix, rule in STYLIZED.items()
              if r.name.startswith(prefix) and r.distance is not None]
    return float(np.mean(ratios))


def row_from(name: str, result, **extra) -> dict:
    records = {r.name: r for r in result.records}
    row = {"row": name, **{short: records[d].synthetic for short, d in zip(DISC_SHORT, DISC, strict=True)},
           "predictive": records["predictive score"].synthetic, "predictive (real)": records["predictive score"].real,
           "memorization": records["memorization"].synthetic,
           "copying flagged": bool(records["memorization"].details.get("flagged")),
           "stylized score": stylized_score(result), **extra}
    for prefix in STYLIZED:
        hits = [r.distance for r in result.records if r.name.startswith(prefix) and r.distance is not None]
        row[prefix] = float(np.mean(hits)) if hits else None
    return row


def gaussian_windows(train_bars: pd.DataFrame, n: int, seq_len: int, seed: int) -> np.ndarray:
    rep = make_representation("log-returns", scaling="standard").fit(train_bars)
    z = np.random.default_rng(seed).standard_normal((n, seq_len, rep.n_features))
    return rep.decode(z)


def diagnosis_markdown(diagnoses: dict) -> str:
    """What gives each model away: the top findings of its diagnosis (``evaluation.diagnosis``)."""
    if not diagnoses:
        return ""
    parts = ["\n## What gives each row away (top findings, most severe first)\n"]
    for name, found in diagnoses.items():
        parts.append(f"**{name}**\n\n" + "\n".join(f"- {line}" for line in found.summary_lines(6)) + "\n")
    return "\n".join(parts)


def to_markdown(rows: list[dict]) -> str:
    columns = ["row", *DISC_SHORT, "predictive", "memorization", "stylized score", *STYLIZED, "train s", "epochs"]
    fmt = {"memorization": "{:.1%}", "predictive": "{:.4f}", "train s": "{:.0f}", "epochs": "{}"}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            text = value if isinstance(value, str) else fmt.get(c, "{:.3f}").format(value) if value is not None else "–"
            if c in row.get("spread", {}):
                text += f" ± {row['spread'][c]:.3f}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(rows: list[dict], floor: dict) -> list[str]:
    models = [r for r in rows if r.get("kind") == "model"]
    garch = next((r for r in models if r["row"] == "garch"), None)
    lines = []
    for r in models:
        gaps = [r[d] - floor[d] for d in DISC_SHORT]
        close = all(g <= floor["spread"][d] for g, d in zip(gaps, DISC_SHORT, strict=True))
        copying = r["copying flagged"]
        better = garch is not None and r is not garch and r["stylized score"] < garch["stylized score"]
        lines.append(f"{r['row']}: gaps to the floor {', '.join(f'{g:+.3f}' for g in gaps)} "
                     f"({'within' if close else 'NOT within'} the floor's spread on all three); memorization "
                     f"{r['memorization']:.1%} ({'copying flagged' if copying else 'no copying'}); stylized score "
                     f"{r['stylized score']:.2f}" + ("" if r is garch or garch is None else
                                                     f" ({'better' if better else 'not better'} than garch's "
                                                     f"{garch['stylized score']:.2f})"))
        if r["row"] in GANS:
            gan_ok = r[DISC_SHORT[0]] <= GAN_TARGET[0] and r[DISC_SHORT[2]] <= GAN_TARGET[1] and not copying
            lines[-1] += (f"; GAN target (≤ {GAN_TARGET[0]} all features, ≤ {GAN_TARGET[1]} returns, no copying) "
                          f"{'met' if gan_ok else 'NOT met'}")
            r["meets target"] = bool(gan_ok)
        else:
            r["meets target"] = bool(close and not copying and better)
    met = [r["row"] for r in models if r.get("meets target")]
    lines.append(f"target met by: {', '.join(met)}" if met else "target met by: no model")
    return lines


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=str(here.parent / "shared" / "data" / "BTCUSDT_1h.csv"))
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--end", default=None, help="last bar's time (UTC); default: the file's last bar")
    parser.add_argument("--budget-minutes", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--floor-repeats", type=int, default=4)
    parser.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                        help="skip the per-model diagnosis (about 1.5 min each)")
    parser.add_argument("--models", default="dcgan,wgan-gp,timegan,garch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="interleaved", choices=pipeline.SPLITS)
    parser.add_argument("--out", default="runs/bench-quality")
    args = parser.parse_args(argv)
    began = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.0f} s] {message}", flush=True)

    with run_directory(args.out, kind="benchmark", overwrite=True) as folder, pipeline.torch_threads(1):
        work = folder.work
        end = read_bars_file(args.csv)["time"].iloc[-1] if args.end is None else pd.Timestamp(args.end, tz="UTC")
        data = load(FileSource(args.csv, start=end - pd.Timedelta(days=args.days) + pd.Timedelta(hours=1),
                               end=None if args.end is None else end))  # the source's end is exclusive
        log(f"{data.label}: {len(data.bars)} bars {data.description['start']} → {data.description['end']}")
        floors = [row_from(f"floor, phase {phase}", real_vs_real_floor(
            data.bars, CHUNK, phase=phase, seq_len=24, discriminators=BENCHMARK_DISCRIMINATORS, repeats=1,
            seed=args.seed + k), kind="floor run") for k, phase in enumerate(floor_phases(args.floor_repeats))]
        floor, spread = floor_with_spread(floors)
        rows = [floor]
        log(f"floor: {floor}; spread: {spread}")
        train_bars, test_bars = pipeline.split_bars(data.bars, seq_len=24, split=args.split)
        test_w = pipeline.real_windows(test_bars, 24, None)
        train_w = pipeline.real_windows(train_bars, 24, None)
        gauss = pipeline.evaluate_windows(test_w, gaussian_windows(train_bars, len(test_w), 24, args.seed),
                                          train=train_w, seq_len=24, seed=args.seed, repeats=args.repeats,
                                          discriminators=BENCHMARK_DISCRIMINATORS)
        rows.append(row_from("i.i.d. Gaussian features", gauss, kind="scale"))
        log(f"gaussian: {rows[-1]}")
        result = comparison.compare(data, args.models.split(","), work=work,
                                    budget_seconds=args.budget_minutes * 60 if args.budget_minutes > 0 else None,
                                    seed=args.seed, seeds=1, seq_len=24, repeats=args.repeats, split=args.split,
                                    discriminators=BENCHMARK_DISCRIMINATORS)
        reference = result.meta["reference"]
        rows.append({"row": "real (training period) vs held-out", "kind": "reference",
                     **{short: reference[d] for short, d in zip(DISC_SHORT, DISC, strict=True)}})
        for run in result.runs:
            rows.append(row_from(run["model"], result.results[(run["model"], run["seed"])], kind="model",
                                 **{"train s": run["train_seconds"], "epochs": run["epochs"]}))
            log(f"{run['model']}: {rows[-1]}")
        diagnoses = {}
        if args.diagnose:
            clock = real_clock(test_bars, 24)
            diagnoses["real (training period)"] = diagnose(test_w, train_w, seq_len=24, seed=args.seed, **clock)
            for run in result.runs:  # the evaluated samples; models with a clock wrote each bar's bar_of_day
                synthetic = pd.read_csv(work / "models" / f"{run['model']}-seed{run['seed']}" / "synthetic.csv")
                diagnoses[run["model"]] = diagnose(test_w, synthetic, seq_len=24, seed=args.seed, **clock)
                log(f"{run['model']} diagnosis: " + " | ".join(diagnoses[run["model"]].summary_lines(3)))
        folder.record["args"] = vars(args)
    lines = verdict(rows, rows[0])
    training = f"budget {args.budget_minutes} min per model" if args.budget_minutes > 0 else "default epochs"
    text = (f"{data.label}, {data.description['start'][:16]} → {data.description['end'][:16]} ({len(data.bars)} "
            f"bars); trained on {result.meta['train']}; evaluated on {result.meta['test']}; {training}; "
            f"repeats {args.repeats}; "
            f"total {time.perf_counter() - began:.0f} s\n\n"
            + to_markdown(rows) + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n"
            + diagnosis_markdown(diagnoses))
    out = Path(args.out)
    (out / "quality.md").write_text(text, encoding="utf-8")
    (out / "quality.json").write_text(json.dumps({"rows": rows, "verdict": lines, "meta": result.meta,
                                                  "diagnosis": {k: d.to_dict() for k, d in diagnoses.items()}},
                                                 indent=2, default=str) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
