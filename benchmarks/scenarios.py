"""Scenario throughput: how long ``marketsynth scenarios`` takes to simulate and summarise N scenarios of H bars.

Target: 100 000 scenarios of 24 bars in under 10 s on a CPU. For each model a checkpoint is written and loaded
the way the CLI does it, then we time

* ``base``: one ``simulate_paths`` (one batched ``model.sample`` + decode) and ``summarize`` (VaR/CVaR at 95/99%,
  moments, percentiles) — the number the target is about;
* ``full`` (with ``--full``): ``analyse`` as the command runs it — the base run plus its stress rows (the
  temperatures 1.5 and 2.0 for models with a sampling temperature, the crash regime for conditional ones).

garch is fitted on the last year of BTCUSDT 1h (``../shared/data``). Neural models use their default
architecture with untrained weights and a fitted representation: sampling cost depends on the architecture, not
on the weights, and training them here would take far longer than the benchmark. Wall time and process CPU time
(summed over threads) are both printed, with the load average, because the machine may be shared.

    python benchmarks/scenarios.py [--num 100000] [--horizon 24] [--models garch,dcgan,wgan-gp,timegan,glow]
                                   [--threads 1,0] [--full]

``--threads`` lists torch thread counts to time (0 = torch's default, one per core); see
``marketsynth.risk.scenarios.torch_threads`` for why 1 can win on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "BTCUSDT_1h.csv"
TARGET_S = 10.0


def build_checkpoint(name: str, bars, folder: Path):
    """A checkpoint of ``name`` on ``bars`` in ``folder`` (the model's own hooks prepare it, as ``api.train``
    does, without the epochs), loaded back through ``load_checkpoint``."""
    from marketsynth.checkpoint import load_checkpoint, save_checkpoint
    from marketsynth.models.data import TrainingData
    from marketsynth.models.registry import get_model_class

    cls = get_model_class(name)
    rep = cls.representation_for("log-returns")
    rep = rep.fit(bars) if rep is not None else None
    data = TrainingData(bars, representation=rep)
    model = cls(cls.configure({}, data))
    arrays = model.training_arrays(data)  # fits what the data decides (glow's whitening, sampling bounds, labels)
    if not model.iterative:  # garch: a real maximum-likelihood fit (a few seconds)
        model.fit_once(arrays)
    out = folder / name
    save_checkpoint(out, model, representation=rep, meta={"source": "benchmark"})
    return load_checkpoint(out)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=100_000)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--models", default="garch,dcgan,wgan-gp,timegan,glow")
    parser.add_argument("--threads", default="1,0", help="torch thread counts to time; 0 = torch's default")
    parser.add_argument("--full", action="store_true", help="also time analyse() with its stress rows")
    args = parser.parse_args(argv)

    from marketsynth import api
    from marketsynth.risk.scenarios import analyse, simulate_paths, summarize

    bars, _ = api.load_bars(csv=DATA)
    bars = bars.iloc[-24 * 365:].reset_index(drop=True)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.1f} at start")
    print(f"# {args.num} scenarios x {args.horizon} bars, target < {TARGET_S:.0f} s\n")
    print("| model | threads | base wall s | base CPU s | scenarios/s | target | full (stress rows) wall s |")
    print("|---|---:|---:|---:|---:|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            checkpoint = build_checkpoint(name, bars, Path(tmp))
            for threads in [int(t) for t in args.threads.split(",") if t.strip()]:
                shown = threads or torch.get_num_threads()

                def base(checkpoint=checkpoint, threads=threads):
                    paths = simulate_paths(checkpoint, args.num, args.horizon, seed=0, threads=threads)
                    return summarize(paths[:, -1], label="base", threshold=0.1)

                summary, wall, cpu = timed(base)
                assert np.isfinite(summary.tail(0.99).cvar)
                full = "-"
                if args.full:
                    _, full_wall, _ = timed(lambda checkpoint=checkpoint, threads=threads: analyse(
                        checkpoint, num=args.num, horizon=args.horizon, threads=threads))
                    full = f"{full_wall:.1f}"
                verdict = "met" if wall < TARGET_S else "MISSED"
                print(f"| {name} | {shown} | {wall:.1f} | {cpu:.1f} | {args.num / wall:,.0f} | {verdict} | {full} |",
                      flush=True)
    print(f"\n# load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
