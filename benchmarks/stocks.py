"""The TimeGAN paper's Stocks benchmark: discriminative and predictive scores on GOOG daily candles (BENCHMARKS.md).

    python benchmarks/stocks.py [--csv ../shared/data/stock_data.csv] [--repeats 3] [--epochs 12] [--seed 0]
                                [--out runs/bench-stocks]

Protocol (``evaluate(..., protocol="timegan")``, the paper's exactly): the rows reversed as the paper's loader
does (its windows run backwards in time), raw open, high, low, close and volume min-max scaled with the real
data's minimum and maximum, every stride-1 window of 24 days, a post-hoc GRU discriminator with hidden
max(F // 2, 1) = 2 trained 2,000 iterations (score |accuracy - 0.5| on a held-out 20 %), and a GRU trained 5,000
iterations on synthetic windows to predict the last column (volume) one step ahead, MAE on the real windows.

Model: ``autoregressive`` on the ``log-returns-level`` representation (the log-return features plus the log of
the previous close, so the model also generates the price level each window starts at: the protocol compares
absolute, min-max scaled prices), ``warmup`` 0 (each path starts from the empty state, whose distribution is
trained to be the data's marginal), trained on every bar as the paper's TimeGAN is; as many synthetic windows as
real ones. Every synthetic value comes from the model: no real window's level, shape or volume is used.

Published (Yoon et al., 2019, Table 2, Stocks): TimeGAN discriminative 0.102 ± 0.021, predictive 0.038 ± 0.001;
real data predictive 0.036 ± 0.001.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from marketsynth import api
from marketsynth.compute import torch_threads
from marketsynth.evaluation.metrics import evaluate

PUBLISHED = {"TimeGAN (paper)": (0.102, 0.021, 0.038, 0.001)}


def paper_bars(csv: str) -> pd.DataFrame:
    """The paper's series: rows reversed, one bar per day (the dates are not in the file)."""
    raw = pd.read_csv(csv)[["Open", "High", "Low", "Close", "Volume"]].iloc[::-1].reset_index(drop=True)
    raw.columns = ["open", "high", "low", "close", "volume"]
    raw.insert(0, "time", pd.date_range("2000-01-01", periods=len(raw), freq="D", tz="UTC"))
    return raw


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=str(here.parent / "shared" / "data" / "stock_data.csv"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-stocks")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bars = paper_bars(args.csv)
    values = bars[["open", "high", "low", "close", "volume"]].to_numpy()
    real = values[np.arange(len(values) - 24)[:, None] + np.arange(24)]  # the reference loader's T - 24 windows
    with torch_threads(1):
        tic = time.perf_counter()
        trained = api.train("autoregressive", bars, representation="log-returns-level", config={"warmup": 0},
                            epochs=args.epochs, seed=args.seed, progress=False)
        train_seconds = time.perf_counter() - tic
        synthetic = trained.representation.decode(trained.model.sample(len(real), seed=args.seed + 1))
        result = evaluate(real, synthetic, seq_len=24, repeats=args.repeats, protocol="timegan", seed=args.seed)
    records = {r.name: r for r in result.records}
    disc, pred = records["discriminative score (all bar features)"], records["predictive score"]
    memo = records["memorization"]
    row = {"discriminative": disc.synthetic, "discriminative std": disc.details.get("std"),
           "predictive": pred.synthetic, "predictive std": pred.details.get("std"), "predictive (real)": pred.real,
           "memorization": memo.synthetic, "copying flagged": bool(memo.details.get("flagged")),
           "train s": train_seconds, "epochs": args.epochs, "windows": len(real)}
    lines = ["| model | discriminative ↓ | predictive ↓ | predictive (real data) | memorization |",
             "|---|---|---|---|---|",
             f"| autoregressive (log-returns-level) | {disc.synthetic:.3f} ± {row['discriminative std'] or 0:.3f} | "
             f"{pred.synthetic:.4f} ± {row['predictive std'] or 0:.4f} | {pred.real:.4f} | {memo.synthetic:.1%}"
             f"{' (flagged)' if row['copying flagged'] else ''} |"]
    for name, (d, ds, p, ps) in PUBLISHED.items():
        lines.append(f"| {name} | {d:.3f} ± {ds:.3f} | {p:.3f} ± {ps:.3f} | 0.036 | – |")
    text = (f"GOOG daily ({len(bars)} bars, reversed as in the paper), TimeGAN protocol, {len(real)} windows of 24, "
            f"repeats {args.repeats}; autoregressive trained {args.epochs} epochs in {train_seconds:.0f} s; total "
            f"{time.perf_counter() - began:.0f} s\n\n" + "\n".join(lines) + "\n")
    (out / "stocks.md").write_text(text, encoding="utf-8")
    (out / "stocks.json").write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
