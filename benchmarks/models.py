"""Model speed: training throughput, a default ``marketsynth train`` on a year of 1h bars, generation, memory.

Per candle model (``--models``; by default the five ``marketsynth run`` trains), in separate processes so each
one's peak memory is its own (``ru_maxrss`` of that child, from ``os.wait4``):

* ``train``: the whole command ``marketsynth train --model M --csv BTCUSDT_1h.csv --start S --end E --epochs N``
  on the last 365 days of ``../shared/data/BTCUSDT_1h.csv`` (8,760 bars; all of them train, as the command does),
  with the epochs ``marketsynth run`` gives the model (``RUN_EPOCHS``, the pre-refactor ``DEFAULT_EPOCHS``;
  fixed here so that every tree does the same work). Wall seconds, CPU seconds, peak RSS. Run once: minutes.
* ``throughput``: ``api.train(M, bars, epochs=N)`` on the last ``--windows`` windows of 24 bars (the same
  epochs, so a phased schedule such as TimeGAN's runs in the same proportions as by default; a fixed number of
  optimizer steps per model), after one untimed warm-up epoch: training windows per second
  (windows × epochs ÷ wall seconds, median of ``--repeats``).
* ``generate``: ``api.sample`` of ``--num`` windows of ``--horizon`` bars from the ``train`` checkpoint
  (sampling and decoding into candles; median of ``--repeats`` after a small warm-up), and the whole command
  ``marketsynth generate --num-samples NUM --length H --output FILE.csv`` (start-up, loading and the file
  included), with its peak RSS. Without a ``train`` checkpoint in ``--workdir`` one is trained for 1 epoch,
  untimed (sampling cost depends on the architecture, not on the weights).

Every process runs torch with one intra-op thread (``OMP_NUM_THREADS=1``, as the tests do). Only the public
surface is used (the ``marketsynth`` command as the tree's pyproject declares it, run by this Python;
``marketsynth.api.load_bars``, ``train``, ``load``, ``sample``), so the same script measures any tree: point
``PYTHONPATH`` at its ``src``::

    PYTHONPATH=/tmp/before/src python benchmarks/models.py [--models autoregressive,garch,dcgan,wgan-gp,timegan]
        [--parts train,generate,throughput] [--repeats 3] [--windows 512] [--num 10000] [--horizon 24]
        [--workdir DIR] [--json FILE]
    python benchmarks/models.py --from-json FILE [FILE ...]   # the table of earlier runs, parts merged by model

Throughputs are shown as "wall (CPU)": windows per wall second and per CPU second of the process. With one
thread the CPU figure is the intrinsic speed, ≈ the wall figure on a free core; compare trees on it when the
machine is busy. The load average (``/proc/loadavg``) is recorded around every measurement: the machine may be shared.
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

import pandas as pd
from measure import child_env, cli, load_average, machine, table, tree

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MARKETSYNTH_SHARED_DATA", ROOT.parent / "shared" / "data")) / "BTCUSDT_1h.csv"
RUN_EPOCHS = {"autoregressive": 10, "garch": 1, "dcgan": 20, "wgan-gp": 8, "timegan": 30}  # aee8790 DEFAULT_EPOCHS
SEQ_LEN = 24  # the default window every model trains on
PARTS = ("train", "generate", "throughput")


def _torch_version() -> str:
    import torch

    return torch.__version__


# ---- environment -------------------------------------------------------------------------------------------
def run_child(args: list[str], cwd: Path, log: Path) -> dict:
    """Run one process to the end: wall and CPU seconds, its own peak RSS (MiB), exit code, output in ``log``."""
    load_before = load_average()
    with open(log, "w") as out:
        began = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    result = {"seconds": round(seconds, 3), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
              "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "rc": process.returncode,
              "load_before": load_before, "load_after": load_average()}
    if process.returncode != 0:
        result["error"] = log.read_text()[-2000:]
        print(f"  FAILED ({process.returncode}): {' '.join(args)}\n{result['error']}", file=sys.stderr, flush=True)
    return result


def year_range() -> tuple[str, str]:
    """``--start``/``--end`` of the last 365 days of the file (end exclusive: one hour after the last bar)."""
    times = pd.to_datetime(pd.read_csv(DATA, usecols=["time"])["time"], unit="ms", utc=True)
    end = times.iloc[-1] + pd.Timedelta(hours=1)
    return f"{end - pd.Timedelta(days=365):%Y-%m-%dT%H:%M}", f"{end:%Y-%m-%dT%H:%M}"


# ---- workers: run in their own process (``--worker``), write JSON -----------------------------------------
def worker_throughput(model: str, epochs: int, windows: int, repeats: int) -> dict:
    from marketsynth import api

    bars, _ = api.load_bars(csv=DATA)
    bars = bars.iloc[-(windows + SEQ_LEN):].reset_index(drop=True)  # the first bar only gives the next a return
    api.train(model, bars, epochs=1, seed=0, progress=False)  # warm-up: lazy imports, first kernels
    runs = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = api.train(model, bars, epochs=epochs, seed=0, progress=False)
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    seconds = statistics.median(w for w, _ in runs)
    work = result.n_windows * epochs
    return {"windows": result.n_windows, "epochs": epochs, "seconds": round(seconds, 4),
            "runs": [round(w, 4) for w, _ in runs], "cpu_seconds": [round(c, 4) for _, c in runs],
            "windows_per_s": round(work / seconds, 1)}


def worker_generate(checkpoint: str, num: int, horizon: int, repeats: int) -> dict:
    from marketsynth import api

    loaded = api.load(checkpoint)
    api.sample(loaded, 16, seed=0, length=horizon)  # warm-up
    runs = []
    for k in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        frame = api.sample(loaded, num, seed=k, length=horizon)
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
        if len(frame) != num * horizon:
            raise SystemExit(f"api.sample gave {len(frame)} rows, expected {num * horizon}")
    seconds = statistics.median(w for w, _ in runs)
    return {"windows": num, "horizon": horizon, "seconds": round(seconds, 4), "runs": [round(w, 4) for w, _ in runs],
            "cpu_seconds": [round(c, 4) for _, c in runs], "windows_per_s": round(num / seconds, 1)}


def run_worker(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    if args.worker == "throughput":
        result = worker_throughput(args.models, args.epochs, args.windows, args.repeats)
    else:
        result = worker_generate(args.checkpoint, args.num, args.horizon, args.repeats)
    Path(args.worker_out).write_text(json.dumps(result))
    return 0


def worker(kind: str, model: str, args: argparse.Namespace, workdir: Path, **extra: str | int) -> dict:
    """One worker process; its JSON plus the process's own measurements (``process``)."""
    out = workdir / f"{model}-{kind}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--models", model, "--worker-out",
               str(out), "--repeats", str(args.repeats), "--windows", str(args.windows), "--num", str(args.num),
               "--horizon", str(args.horizon), *(str(x) for k, v in extra.items() for x in (f"--{k}", v))]
    process = run_child(command, workdir, workdir / f"{model}-{kind}.log")
    result = json.loads(out.read_text()) if process["rc"] == 0 else {}
    return {**result, "process": process}


# ---- one model ---------------------------------------------------------------------------------------------
def bench_model(model: str, epochs: int, parts: list[str], args: argparse.Namespace, workdir: Path,
                year: tuple[str, str]) -> dict:
    checkpoint = workdir / f"{model}-checkpoint"
    entry: dict = {"model": model, "epochs": epochs}
    train = [*cli(), "train", "--model", model, "--csv", str(DATA), "--start", year[0], "--end", year[1],
             "--out", str(checkpoint)]
    if "train" in parts:
        shutil.rmtree(checkpoint, ignore_errors=True)
        print(f"  {model}: marketsynth train, {epochs} epoch(s) on one year ...", flush=True)
        entry["train"] = run_child([*train, "--epochs", str(epochs)], workdir, workdir / f"{model}-train.log")
        entry["train"]["command"] = " ".join(["marketsynth", *train[3:], "--epochs", str(epochs)])
    if "generate" in parts:
        if not (checkpoint.is_dir() and any(checkpoint.iterdir())):
            print(f"  {model}: no checkpoint yet; training 1 epoch (untimed) to sample from", flush=True)
            shutil.rmtree(checkpoint, ignore_errors=True)
            run_child([*train, "--epochs", "1"], workdir, workdir / f"{model}-train1.log")
            entry["generate_weights"] = "1 epoch"
        print(f"  {model}: generation, {args.num:,} x {args.horizon} ...", flush=True)
        entry["generate"] = worker("generate", model, args, workdir, checkpoint=str(checkpoint))
        output = workdir / f"{model}-samples.csv"
        command = [*cli(), "generate", "--model", str(checkpoint), "--num-samples", str(args.num), "--length",
                   str(args.horizon), "--output", str(output)]
        runs = [run_child(command, workdir, workdir / f"{model}-generate.log") for _ in range(args.repeats)]
        output.unlink(missing_ok=True)
        entry["generate_command"] = {"seconds": round(statistics.median(r["seconds"] for r in runs), 3),
                                     "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "runs": runs}
    if "throughput" in parts:
        print(f"  {model}: training throughput, {args.windows} windows x {epochs} epoch(s) ...", flush=True)
        entry["throughput"] = worker("throughput", model, args, workdir, epochs=epochs)
    return entry


def row(entry: dict) -> list[str]:
    def failed(part: str) -> bool:
        value = entry.get(part, {})
        return bool(value.get("error") or value.get("process", {}).get("error"))

    def cell(part: str, text) -> str:
        return "failed" if failed(part) else text() if part in entry else "–"

    def speed(part: str, work: float) -> str:
        measured = entry[part]
        return f"{work / measured['seconds']:,.0f} ({work / statistics.median(measured['cpu_seconds']):,.0f})"

    train, gen = entry.get("train", {}), entry.get("generate_command", {})
    throughput, generate = entry.get("throughput", {}), entry.get("generate", {})
    ones = [float(x.split()[0]) for p in _processes(entry) for x in (p.get("load_before"), p.get("load_after")) if x]
    return [
        entry["model"], str(entry["epochs"]),
        cell("train", lambda: f"{train['seconds']:.1f} ({train['cpu_seconds']:.1f})"),
        cell("train", lambda: f"{train['peak_rss_mib']:,.0f}"),
        cell("throughput", lambda: speed("throughput", throughput["windows"] * throughput["epochs"])),
        cell("generate", lambda: speed("generate", generate["windows"])),
        cell("generate_command", lambda: "{:.1f} ({:.1f})".format(
            gen["seconds"], statistics.median(r["cpu_seconds"] for r in gen["runs"]))),
        cell("generate_command", lambda: f"{gen['peak_rss_mib']:,.0f}"),
        f"{min(ones):.1f}–{max(ones):.1f}" if ones else "–",
    ]


def _processes(entry: dict) -> list[dict]:
    found = [entry[p] for p in ("train",) if p in entry]
    found += [entry[p]["process"] for p in ("generate", "throughput") if p in entry]
    found += entry.get("generate_command", {}).get("runs", [])
    return found


HEADER = ["model", "epochs", "`train` s, 1 year: wall (CPU)", "train peak RSS MiB",
          "training windows/s: wall (CPU)", "generation windows/s (api): wall (CPU)",
          "`generate` s (command): wall (CPU)", "generate peak RSS MiB", "load (1 min)"]


def print_saved(paths: list[Path]) -> int:
    """The table of earlier ``--json`` files; a later file's parts replace an earlier one's for the same model."""
    merged: dict[str, dict] = {}
    for path in paths:
        report = json.loads(path.read_text())
        tree_ = report["tree"]
        print(f"# {path}: marketsynth {tree_['commit']}{' (with local changes)' if tree_['dirty'] else ''}, "
              f"{report['machine']['when']}, {report['windows']} windows, {report['num']:,} x {report['horizon']}")
        for entry in report["models"]:
            merged.setdefault(entry["model"], {}).update(entry)
    print()
    print(table(HEADER, [row(e) for e in merged.values()]))
    return 0


# ---- main --------------------------------------------------------------------------------------------------
def split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", "--model-list", default=",".join(RUN_EPOCHS), help="models, comma-separated")
    parser.add_argument("--parts", default=",".join(PARTS), help="train, generate, throughput (comma-separated)")
    parser.add_argument("--epochs", type=int, help="epochs for every model instead of RUN_EPOCHS (smoke tests)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the short measurements; the median is shown")
    parser.add_argument("--windows", type=int, default=512, help="training windows for the throughput part")
    parser.add_argument("--num", type=int, default=10_000, help="windows generated")
    parser.add_argument("--horizon", type=int, default=24, help="bars per generated window")
    parser.add_argument("--workdir", type=Path, help="keep checkpoints and logs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--from-json", type=Path, nargs="+", help="print the table of earlier --json files")
    parser.add_argument("--worker", choices=["throughput", "generate"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args)
    if args.from_json:
        return print_saved(args.from_json)
    models, parts = split(args.models), split(args.parts)
    if unknown := sorted(set(parts) - set(PARTS)):
        parser.error(f"unknown part(s): {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if missing := [m for m in models if m not in RUN_EPOCHS and not args.epochs]:
        parser.error(f"no default epochs for {', '.join(missing)}; give --epochs N")
    if not DATA.exists():
        parser.error(f"{DATA} is missing (the project's shared data; or set MARKETSYNTH_SHARED_DATA)")

    report = {"benchmark": "models", "tree": tree(), "machine": machine(torch=_torch_version()), "data": str(DATA),
              "year": year_range(),
              "repeats": args.repeats, "windows": args.windows, "num": args.num, "horizon": args.horizon,
              "torch_threads": 1, "models": []}
    print(f"# benchmarks/models.py — marketsynth {report['tree']['commit']}"
          f"{' (with local changes)' if report['tree']['dirty'] else ''} from {report['tree']['package']}")
    print(f"# {report['machine']['cpus']} CPUs ({report['machine']['cpu']}), torch {report['machine']['torch']} "
          f"(1 thread), {report['machine']['when']}, load {load_average()}")
    print(f"# train: {report['year'][0]} → {report['year'][1]} (exclusive); throughput: {args.windows} windows; "
          f"generation: {args.num:,} x {args.horizon}; median of {args.repeats}", flush=True)
    _warn_if_defaults_moved()
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-models-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for model in models:
            entry = bench_model(model, args.epochs or RUN_EPOCHS[model], parts, args, workdir, report["year"])
            report["models"].append(entry)
            print("  " + " | ".join(row(entry)), flush=True)
            if args.json:
                _write_json(report, args.json)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(HEADER, [row(e) for e in report["models"]]))
    print(f"\n# load at the end {load_average()}")
    if args.json:
        _write_json(report, args.json)
        print(f"wrote {args.json}")
    return 0


def _warn_if_defaults_moved() -> None:
    """Say so when the measured tree's ``run`` defaults differ from ``RUN_EPOCHS`` (the work stays the same)."""
    try:
        from marketsynth.pipeline import DEFAULT_EPOCHS
    except ImportError:
        return
    moved = {m: (e, DEFAULT_EPOCHS.get(m)) for m, e in RUN_EPOCHS.items() if DEFAULT_EPOCHS.get(m) != e}
    if moved:
        print(f"# note: this tree's run epochs differ ({moved}: ours, its); measuring ours, for comparability")


def _write_json(report: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    shutil.move(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
