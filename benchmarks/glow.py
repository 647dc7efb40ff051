"""Glow: training time on one year of 1h bars and exact log-likelihood throughput.

    python benchmarks/glow.py [--csv ../shared/data/BTCUSDT_1h.csv] [--epochs 50]

Targets (BENCHMARKS.md): training under 3 minutes on a 2-core CPU; log-likelihood throughput in bars/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from marketsynth import api
from marketsynth.data.io import read_bars_file

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "BTCUSDT_1h.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args()
    os.environ.setdefault("MARKETSYNTH_NO_PROGRESS", "1")
    bars = read_bars_file(args.csv)
    year = bars[(bars.time >= "2022-01-01") & (bars.time < "2023-01-01")].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = api.train("glow", year, epochs=args.epochs, out=Path(tmp) / "glow", progress=False)
        train_seconds = time.perf_counter() - started
        model = result.model
        summary = model.heldout_summary()
        from marketsynth.features import bar_features

        features = bar_features(bars).to_numpy()
        model.log_likelihood(features[:1000])  # warm-up
        started = time.perf_counter()
        model.log_likelihood(features)
        loglik_seconds = time.perf_counter() - started
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {os.cpu_count()} cores")
    print(f"training: {len(year)} bars (2022), {args.epochs} epochs: {train_seconds:.1f} s")
    print(f"held-out: {summary}")
    rate = len(features) / loglik_seconds
    print(f"log-likelihood: {len(features)} bars in {loglik_seconds:.2f} s = {rate:,.0f} bars/s")


if __name__ == "__main__":
    main()
