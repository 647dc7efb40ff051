"""Backtest speed: marketsynth's two paths next to vectorbt and backtesting.py on the same synthetic candles.

The case (issue 10): 1,000,000 hourly bars, SMA 50/200 crossover long-only, 0.05 % fee per side, next-open fills.
Every engine runs in a fresh subprocess, so its first call pays whatever warm-up it has (vectorbt's numba JIT);
later calls in the same process are "warm". The script checks that all engines produce the same number of trades.

    pip install -e '.[bench]'
    python benchmarks/backtest.py                     # all four, 1M bars
    python benchmarks/backtest.py --bars 100000 --engines ours-vectorised,ours-event

Times are wall-clock seconds and process CPU seconds (CPU is the steadier number on a shared machine). The bars are
a geometric random walk (0.6 % hourly volatility, seed 7) with wicks; generating them is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd

ENGINES = ("ours-vectorised", "ours-event", "vectorbt", "backtesting")
FEE = 0.0005
FAST, SLOW = 50, 200


def synthetic_bars(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.006, n)))
    open_ = np.r_[100.0, close[:-1]]
    wicks = np.abs(rng.normal(0.0, 0.002, (2, n)))
    times = pd.date_range("2000-01-01", periods=n, freq="h", tz="UTC").astype("datetime64[us, UTC]")
    return pd.DataFrame({"time": times, "open": open_, "high": np.maximum(open_, close) * (1 + wicks[0]),
                         "low": np.minimum(open_, close) * (1 - wicks[1]), "close": close, "volume": 1.0})


def _timed(call):
    wall, cpu = time.perf_counter(), time.process_time()
    out = call()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def worker(engine: str, n: int, repeat: int) -> dict:
    bars = synthetic_bars(n)
    wall, cpu = time.perf_counter(), time.process_time()
    run = _loader(engine, bars)
    imported = {"import_s": time.perf_counter() - wall, "import_cpu_s": time.process_time() - cpu}
    trades, first, first_cpu = _timed(run)
    warm = [_timed(run)[1:] for _ in range(repeat)]
    record = {"engine": engine, "bars": n, "trades": int(trades), "first_s": first, "first_cpu_s": first_cpu,
              **imported}
    if warm:
        record["warm_s"] = min(w for w, _ in warm)
        record["warm_cpu_s"] = min(c for _, c in warm)
    return record


def _loader(engine: str, bars: pd.DataFrame):
    """Import the engine and return a zero-argument call that runs the whole backtest and returns its trades."""
    if engine.startswith("ours"):
        from marketsynth.trading.costs import Costs
        from marketsynth.trading.engine import backtest
        from marketsynth.trading.strategies import create_strategy

        mode = "vectorised" if engine == "ours-vectorised" else "event"
        costs = Costs(taker_fee=FEE, maker_fee=FEE)

        def run():
            strategy = create_strategy("sma-crossover", {"fast": FAST, "slow": SLOW})
            return len(backtest(bars, strategy, costs=costs, mode=mode).trades)

        return run
    if engine == "vectorbt":
        import vectorbt as vbt

        close, open_ = bars["close"], bars["open"]

        def run():
            fast, slow = vbt.MA.run(close, FAST), vbt.MA.run(close, SLOW)
            entries = fast.ma_crossed_above(slow).shift(1, fill_value=False)  # act at the next bar's open
            exits = fast.ma_crossed_below(slow).shift(1, fill_value=False)
            portfolio = vbt.Portfolio.from_signals(close, entries, exits, price=open_, fees=FEE, init_cash=10_000,
                                                   freq="1h")
            return portfolio.trades.count()  # an open trade at the end counts too, as ours closes it

        return run
    if engine == "backtesting":
        from backtesting import Backtest, Strategy
        from backtesting.lib import crossover

        def sma(values, k):
            return pd.Series(values).rolling(k).mean().to_numpy()

        class SmaCross(Strategy):
            def init(self):
                self.fast = self.I(sma, self.data.Close, FAST)
                self.slow = self.I(sma, self.data.Close, SLOW)

            def next(self):
                if crossover(self.fast, self.slow):
                    self.buy()
                elif crossover(self.slow, self.fast):
                    self.position.close()

        frame = pd.DataFrame({"Open": bars["open"].to_numpy(), "High": bars["high"].to_numpy(),
                              "Low": bars["low"].to_numpy(), "Close": bars["close"].to_numpy(),
                              "Volume": bars["volume"].to_numpy()}, index=bars["time"].dt.tz_localize(None))

        def run():
            # whole units only in backtesting.py: a large cash keeps sizing from rounding to 0
            stats = Backtest(frame, SmaCross, cash=1e9, commission=FEE, finalize_trades=True).run()
            return stats["# Trades"]

        return run
    raise SystemExit(f"unknown engine {engine}; choose from {', '.join(ENGINES)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--repeat", type=int, default=3, help="warm calls after the first (backtesting.py: 0)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        warnings.filterwarnings("ignore")
        os.environ["TQDM_DISABLE"] = "1"
        print(json.dumps(worker(args.worker, args.bars, args.repeat)))
        return
    records = []
    load = os.getloadavg()[0]
    for engine in args.engines.split(","):
        repeat = 0 if engine == "backtesting" else args.repeat
        out = subprocess.run([sys.executable, __file__, "--worker", engine, "--bars", str(args.bars), "--repeat",
                              str(repeat)], capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"{engine} failed")
        records.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(_row(records[-1]), flush=True)
    print(f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    by = {r["engine"]: r for r in records}
    counts = {r["engine"]: r["trades"] for r in records}
    print("trades:", counts, "— same" if len(set(counts.values())) == 1 else "— DIFFERENT")
    if "ours-vectorised" in by and "vectorbt" in by:
        ours, theirs = by["ours-vectorised"], by["vectorbt"]
        print(f"vectorised vs warm vectorbt: {theirs['warm_s'] / ours['warm_s']:.1f}x faster warm (wall), "
              f"{theirs['warm_cpu_s'] / ours['warm_cpu_s']:.1f}x (CPU); first call "
              f"{ours['first_s']:.2f} s vs {theirs['first_s']:.2f} s")
    if "ours-event" in by and "backtesting" in by:
        ours, theirs = by["ours-event"], by["backtesting"]
        print(f"event loop vs backtesting.py: {theirs['first_s'] / ours['first_s']:.1f}x faster (wall), "
              f"{theirs['first_cpu_s'] / ours['first_cpu_s']:.1f}x (CPU), first calls")


def _row(r: dict) -> str:
    warm = f"warm {r['warm_s']:.3f} s ({r['warm_cpu_s']:.3f} CPU)" if "warm_s" in r else "warm -"
    return (f"{r['engine']:16} {r['bars']:>9,} bars  import {r['import_s']:.2f} s  first {r['first_s']:.3f} s "
            f"({r['first_cpu_s']:.3f} CPU)  {warm}  trades {r['trades']}")


if __name__ == "__main__":
    main()
