"""Data speed: the full BTCUSDT 1h history from the fake exchange into DuckDB, and Store bulk throughput.

Two parts (``--parts``):

* ``fetch``: the whole ``marketsynth fetch`` command, as a user runs it (a fresh process: start-up and imports
  included), bringing every bar of ``../shared/data/BTCUSDT_1h.csv`` (33,364 bars, 2019-09-08 17:00 →
  2023-06-29 20:00 UTC) from the project's fake exchange (``marketsynth.testing.FakeExchange``, served from this
  process on 127.0.0.1) into a fresh DuckDB file. Target: under 5 s. Also timed: the bare process start-up
  (``marketsynth --version``) and a re-run that finds nothing to fetch. The stored row count is checked.
* ``store``: bulk ``write_bars`` into an empty store, ``read_bars`` of everything back, and an idempotent re-write
  of the same rows, in rows/s, for DuckDB (a fresh file) and PostgreSQL 15 (a fresh database on a throwaway
  server started like the test suite's, ``tests/fixtures/postgres.py``). 33,364 rows are the real file; larger
  sizes repeat its bars on an earlier hourly grid.

Only the public surface is used (the ``marketsynth`` command as the tree's pyproject declares it, run by this
Python; ``open_store`` and the Store methods; the fake exchange), so the same script measures any tree: point
``PYTHONPATH`` at its ``src``::

    PYTHONPATH=/tmp/before/src python benchmarks/data.py [--parts fetch,store] [--exchanges binance,bybit]
        [--backends duckdb,postgres] [--rows 33364,333640] [--repeats 3] [--json FILE]

Each measurement is repeated ``--repeats`` times and the median shown; the load average (``/proc/loadavg``) is
recorded before and after each part because the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from measure import child_env, cli, load_average, machine, table, tree

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MARKETSYNTH_SHARED_DATA", ROOT.parent / "shared" / "data")) / "BTCUSDT_1h.csv"
FETCH_TARGET_S = 5.0
SYMBOL, INTERVAL = "BTCUSDT", "1h"


# ---- environment -------------------------------------------------------------------------------------------
def run_command(args: list[str], cwd: Path) -> float:
    """Wall seconds of one command; a failure stops the benchmark with the command's output."""
    began = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=child_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return seconds


# ---- fetch end to end --------------------------------------------------------------------------------------
def bench_fetch(bars: pd.DataFrame, exchanges: list[str], repeats: int) -> dict:
    from marketsynth.data.store import open_store
    from marketsynth.testing import FakeExchange

    first, last = bars["time"].iloc[0], bars["time"].iloc[-1]
    start, end = f"{first:%Y-%m-%dT%H:%M}", f"{last + pd.Timedelta(hours=1):%Y-%m-%dT%H:%M}"
    load_before = load_average()
    startup = [run_command([*cli(), "--version"], ROOT) for _ in range(repeats)]
    results = []
    with FakeExchange({SYMBOL: bars}) as fake, tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
        for exchange in exchanges:
            fresh, rerun = [], []
            for k in range(repeats):
                store = Path(tmp) / f"{exchange}-{k}.duckdb"
                command = [*cli(), "fetch", "--exchange", exchange, "--symbol", SYMBOL, "--interval", INTERVAL,
                           "--start", start, "--end", end, "--store", str(store), "--base-url", fake.base_url]
                fresh.append(run_command(command, Path(tmp)))
                rerun.append(run_command(command, Path(tmp)))
                with open_store(store, read_only=True) as db:
                    stored = len(db.read_bars(exchange, SYMBOL, INTERVAL))
                if stored != len(bars):
                    raise SystemExit(f"fetch from {exchange} stored {stored} bars, expected {len(bars)}")
                store.unlink()
            seconds = statistics.median(fresh)
            results.append({"exchange": exchange, "bars": len(bars), "seconds": round(seconds, 3),
                            "runs": [round(s, 3) for s in fresh], "bars_per_s": round(len(bars) / seconds),
                            "rerun_seconds": round(statistics.median(rerun), 3),
                            "target_met": seconds < FETCH_TARGET_S})
    return {"command": f"marketsynth fetch --exchange EXCHANGE --symbol {SYMBOL} --interval {INTERVAL} "
                       f"--start {start} --end {end} --store FRESH.duckdb --base-url FAKE",
            "startup_seconds": round(statistics.median(startup), 3), "target_seconds": FETCH_TARGET_S,
            "results": results, "load_before": load_before, "load_after": load_average()}


def print_fetch(part: dict) -> None:
    print(f"## fetch end to end (target < {part['target_seconds']:.0f} s)\n")
    print(f"`{part['command']}`; process start-up alone (`marketsynth --version`): {part['startup_seconds']:.2f} s; "
          f"load {part['load_before']} → {part['load_after']}\n")
    rows = [[r["exchange"], f"{r['bars']:,}", f"{r['seconds']:.2f}", ", ".join(f"{s:.2f}" for s in r["runs"]),
             f"{r['seconds'] - part['startup_seconds']:.2f}", f"{r['bars_per_s']:,}", f"{r['rerun_seconds']:.2f}",
             "met" if r["target_met"] else "missed"] for r in part["results"]]
    print(table(["exchange", "bars", "fetch s (median)", "runs s", "beyond start-up s", "bars/s (whole command)",
                 "re-run s (nothing new)", "< 5 s"], rows))
    print()


# ---- store bulk throughput ---------------------------------------------------------------------------------
def synthetic_bars(bars: pd.DataFrame, rows: int) -> pd.DataFrame:
    """``rows`` valid bars: the real ones repeated, on an hourly grid ending at the real last bar."""
    values = bars.drop(columns="time").to_numpy()
    repeated = values[np.arange(rows) % len(values)]
    times = pd.date_range(end=bars["time"].iloc[-1], periods=rows, freq="1h", tz="UTC").as_unit("us")
    frame = pd.DataFrame(repeated, columns=bars.columns[1:])
    frame.insert(0, "time", times)
    return frame


def store_round(target: str, frame: pd.DataFrame) -> dict[str, float]:
    """Write into an empty store, read everything back, write the same rows again: seconds of each."""
    from marketsynth.data.store import open_store

    with open_store(target) as db:
        began = time.perf_counter()
        db.write_bars("binance", SYMBOL, INTERVAL, frame)
        write = time.perf_counter() - began
        began = time.perf_counter()
        back = db.read_bars("binance", SYMBOL, INTERVAL)
        read = time.perf_counter() - began
        began = time.perf_counter()
        db.write_bars("binance", SYMBOL, INTERVAL, frame)
        rewrite = time.perf_counter() - began
    if len(back) != len(frame):
        raise SystemExit(f"{target}: read {len(back)} rows back after writing {len(frame)}")
    return {"write": write, "read": read, "rewrite": rewrite}


def postgres_server():
    """A throwaway PostgreSQL 15 server, the test suite's (``tests/fixtures/postgres.py``), started."""
    sys.path.insert(0, str(ROOT))
    try:
        from tests.fixtures.postgres import PostgresServer
    finally:
        sys.path.remove(str(ROOT))
    server = PostgresServer()
    try:
        server.start()
    except BaseException as exc:  # the fixture calls pytest.fail when the binaries are missing
        server.stop()
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise SystemExit(f"cannot start PostgreSQL for the benchmark: {exc}; use --backends duckdb") from None
    return server


def bench_store(bars: pd.DataFrame, backends: list[str], sizes: list[int], repeats: int) -> dict:
    load_before = load_average()
    results = []
    server = postgres_server() if "postgres" in backends else None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
            for backend in backends:
                counter = iter(range(10**6))

                def target(backend=backend, counter=counter) -> str:
                    if backend == "duckdb":
                        return str(Path(tmp) / f"store-{next(counter)}.duckdb")
                    return server.url(server.create_database("bench"))

                store_round(target(), bars.iloc[:100])  # warm-up: imports, first connection
                for rows in sizes:
                    frame = bars if rows == len(bars) else synthetic_bars(bars, rows)
                    rounds = [store_round(target(), frame) for _ in range(repeats)]
                    entry = {"backend": backend, "rows": rows}
                    for op in ("write", "read", "rewrite"):
                        seconds = statistics.median(r[op] for r in rounds)
                        entry[op] = {"seconds": round(seconds, 4), "rows_per_s": round(rows / seconds),
                                     "runs": [round(r[op], 4) for r in rounds]}
                    results.append(entry)
                    for path in Path(tmp).glob("*.duckdb*"):
                        path.unlink()
    finally:
        if server is not None:
            server.stop()
    return {"results": results, "load_before": load_before, "load_after": load_average()}


def print_store(part: dict) -> None:
    print(f"## Store bulk throughput (median; load {part['load_before']} → {part['load_after']})\n")
    rows = []
    for r in part["results"]:
        rows.append([r["backend"], f"{r['rows']:,}",
                     *(f"{r[op]['rows_per_s']:,} ({r[op]['seconds']:.2f} s)" for op in ("write", "read", "rewrite"))])
    print(table(["backend", "rows", "write_bars, empty store: rows/s", "read_bars, all: rows/s",
                 "write_bars again (idempotent): rows/s"], rows))
    print()


# ---- main --------------------------------------------------------------------------------------------------
def split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="fetch,store", help="fetch, store (comma-separated)")
    parser.add_argument("--exchanges", default="binance,bybit", help="fake exchange APIs to fetch from")
    parser.add_argument("--backends", default="duckdb,postgres", help="stores for the bulk throughput")
    parser.add_argument("--rows", default="33364,333640", help="bars per bulk write (comma-separated)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is shown")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    parts = split(args.parts)
    unknown = sorted(set(parts) - {"fetch", "store"}) + sorted(set(split(args.backends)) - {"duckdb", "postgres"})
    if unknown:
        parser.error(f"unknown part or backend: {', '.join(unknown)}")
    if not DATA.exists():
        parser.error(f"{DATA} is missing (the project's shared data; or set MARKETSYNTH_SHARED_DATA)")

    from marketsynth.testing import read_kline_csv

    bars = read_kline_csv(DATA)
    report = {"benchmark": "data", "tree": tree(), "machine": machine(), "data": str(DATA), "bars": len(bars),
              "repeats": args.repeats}
    print(f"# benchmarks/data.py — marketsynth {report['tree']['commit']}"
          f"{' (with local changes)' if report['tree']['dirty'] else ''} from {report['tree']['package']}")
    print(f"# {report['machine']['cpus']} CPUs ({report['machine']['cpu']}), {report['machine']['when']}, "
          f"load {load_average()}; median of {args.repeats}\n")
    if "fetch" in parts:
        report["fetch"] = bench_fetch(bars, split(args.exchanges), args.repeats)
        print_fetch(report["fetch"])
    if "store" in parts:
        sizes = [int(n) for n in split(args.rows)]
        report["store"] = bench_store(bars, split(args.backends), sizes, args.repeats)
        print_store(report["store"])
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        shutil.move(tmp, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
