"""Stress-test throughput: a rule-based strategy over N synthetic paths of H bars (``marketsynth stress``).

Target: 1,000 paths of 168 bars in seconds, not minutes, on this CPU. A garch checkpoint is fitted on the last
year of BTCUSDT 1h (``../shared/data``) and loaded the way the CLI does it; then we time

* ``paths``: ``stress_paths`` — one batched sample of N × H bars, decoded, each path put after the last W real
  bars (W = twice the strategy's warm-up, at least 50);
* ``backtest``: ``run_stress`` — the engine's backtest of every path (vectorised signals, the shared ledger) and
  the survival / recovery / drawdown figures.

Wall time and process CPU time are printed with the load average, because the machine may be shared.

    python benchmarks/stress.py [--num 1000] [--horizon 168] [--strategy sma-crossover] [--param fast=10 ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "BTCUSDT_1h.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--horizon", type=int, default=168)
    parser.add_argument("--strategy", default="sma-crossover")
    parser.add_argument("--param", action="append", default=["fast=10", "slow=50"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from marketsynth import api
    from marketsynth.compute import torch_threads
    from marketsynth.trading.experiments.stress import run_stress, stress_paths, warm_bars
    from marketsynth.trading.strategies import create_strategy

    params = dict(item.split("=", 1) for item in args.param)
    strategy = create_strategy(args.strategy, params)
    bars, _ = api.load_bars(csv=DATA)
    bars = bars.iloc[-24 * 365:].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        api.train("garch", bars, out=Path(tmp) / "garch")
        checkpoint = api.load(Path(tmp) / "garch")
    warm = warm_bars(strategy)
    print(f"{args.strategy} {params}: {args.num} paths x {args.horizon} bars after {warm} real bars; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for repeat in range(args.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        with torch_threads(1):
            paths = stress_paths(checkpoint, bars, num=args.num, horizon=args.horizon, warm=warm, seed=repeat)
        paths_wall, paths_cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall, cpu = time.perf_counter(), time.process_time()
        result = run_stress(strategy, paths)
        run_wall, run_cpu = time.perf_counter() - wall, time.process_time() - cpu
        summary = result.summary()
        print(f"run {repeat + 1}: paths {paths_wall:.2f} s wall ({paths_cpu:.2f} s CPU), backtest {run_wall:.2f} s "
              f"wall ({run_cpu:.2f} s CPU), total {paths_wall + run_wall:.2f} s; {run_wall / args.num * 1e3:.2f} ms "
              f"per path; survival {summary['survival_rate']:.1%}, mean return {summary['mean_return']:+.3%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
