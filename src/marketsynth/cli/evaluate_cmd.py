"""``marketsynth evaluate``: score synthetic candles against real ones; print the verdicts, write JSON and a report.

Real candles come from a file or the store (as for ``train``) and are cut into every gap-free window of
``--seq-len`` bars; synthetic candles are the file ``marketsynth generate`` writes (``sample_id, timestep,
open, high, low, close, volume``) or any candle file, cut the same way. Everything is checked before the slow
part starts, so a wrong option fails in a second rather than after minutes of classifier training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from marketsynth.cli.common import console, stage_display
from marketsynth.cli.options import data_source_options
from marketsynth.compute import torch_threads
from marketsynth.data.io import read_table
from marketsynth.data.load import load
from marketsynth.errors import ConfigError, DataError

DEFAULT_SEQ_LEN = 24
MIN_SYNTHETIC_WINDOWS = 10
VERDICT_STYLES = {"good": "green", "fair": "yellow", "poor": "bold red", "n/a": "dim"}
LONG_FRAME_KEYS = ("sample_id", "timestep")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


@data_source_options()
def evaluate(
    source=None,
    synthetic: Path = typer.Option(..., "--synthetic", help="Generated candles (sample_id, timestep, open, high, "
                                                            "low, close, volume) or a candle file."),
    seq_len: int = typer.Option(None, "--seq-len", min=2, help="Bars per window (default: the length of the "
                                                               "generated samples, else 24)."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Runs of each neural score (mean ± std)."),
    protocol: str = typer.Option("default", "--protocol", help="default | timegan (the TimeGAN paper's scores)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same numbers."),
    max_windows: int = typer.Option(5000, "--max-windows", min=10,
                                    help="Windows per set for the classifiers and neighbour metrics (random "
                                         "subset); return statistics use all."),
    model: Path = typer.Option(None, "--model", "-m", help="Checkpoint directory: adds its training curves to "
                                                           "the report."),
    report: Path = typer.Option(None, "--report", help="Write an HTML report (PNGs in <name>_files/ beside it)."),
    json_path: Path = typer.Option(None, "--json", help="Write the metrics as JSON."),
    diagnose: bool = typer.Option(False, "--diagnose", help="Also find what gives the synthetic windows away "
                                                            "(7 more discriminators, about a minute per repeat)."),
) -> None:
    """Compare synthetic candles with real ones: return statistics, stylized facts, discriminative, predictive
    and TSTR scores, memorization, candle validity; each with a verdict and a plain-language explanation."""
    from marketsynth.evaluation import PROTOCOLS
    from marketsynth.evaluation import evaluate as run_evaluation
    from marketsynth.evaluation.diagnosis import real_clock

    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol '{protocol}' is unknown; use one of {', '.join(PROTOCOLS)}")
    _check_outputs(report, json_path, model)
    synthetic_windows, seq_len, synthetic_text = load_synthetic_windows(synthetic, seq_len)
    with stage_display() as progress, torch_threads(1):
        data = load(source, progress=progress)
        real_windows = real_windows_from_bars(data.bars, seq_len, data.adjacent)
        result = run_evaluation(real_windows, synthetic_windows, seq_len=seq_len, repeats=repeats, protocol=protocol,
                                seed=seed, max_windows=max_windows, progress=progress,
                                diagnose=real_clock(data.bars, seq_len, data.adjacent) if diagnose else False)
        progress.finish("evaluate", "done")
    console.print(metrics_table(result))
    counts = result.verdict_counts()
    console.print("verdicts: " + ", ".join(f"{counts[v]} {v}" for v in counts if counts[v])
                  + f" ({len(result.records)} checks, {result.n_real:,} real vs {result.n_synthetic:,} synthetic "
                    f"windows of {seq_len} bars, {result.seconds:.0f} s)")
    for note in result.notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    if result.diagnosis is not None:
        console.print("what gives the synthetic windows away (most noticeable first):")
        for line in result.diagnosis.summary_lines(8):
            console.print(f"  {line}", markup=False, soft_wrap=True)
    if json_path is not None:
        result.to_json(json_path)
        console.print(f"metrics: {json_path}", markup=False)
    if report is not None:
        from marketsynth.evaluation.report import write_report

        summary = {"real data": _describe_real(data, len(real_windows)), "synthetic data": synthetic_text}
        if model is not None:
            summary["model"] = str(model)
        with stage_display() as progress:
            progress.start("report", 1, report.name)
            write_report(report, title=f"Synthetic vs real candles: {synthetic.name}", result=result,
                         real_windows=real_windows, synthetic_windows=synthetic_windows, model_dir=model,
                         summary=summary)
            progress.finish("report", report.name)
        console.print(f"report: {report} (figures in {report.with_name(report.stem + '_files')}/)", markup=False)
    elif json_path is None:
        console.print("add --report report.html for the charts, --json metrics.json for the numbers")


def metrics_table(result) -> Table:
    """The records as a rich table: group, metric, real, synthetic, distance, verdict."""
    from marketsynth.evaluation.report import format_values

    table = Table(title="evaluate", title_justify="left")
    table.add_column("group")
    table.add_column("metric")
    for name in ("real", "synthetic", "distance"):
        table.add_column(name, justify="right")
    table.add_column("verdict")
    records = result.records
    for i, record in enumerate(records):
        first = i == 0 or records[i - 1].group != record.group
        last = i == len(records) - 1 or records[i + 1].group != record.group
        real, synthetic, distance = format_values(record)
        style = VERDICT_STYLES.get(record.verdict, "")
        table.add_row(record.group if first else "", record.name, real, synthetic, distance,
                      f"[{style}]{record.verdict}[/]" if style else record.verdict, end_section=last)
    return table


def load_synthetic_windows(path: Path, seq_len: int | None) -> tuple[np.ndarray, int, str]:
    """(windows ``[n, L, 5]``, the window length to use, a description) from a generated or a candle file."""
    from marketsynth.evaluation import candle_windows, windows_from_long_frame

    frame = read_table(path)
    columns = {str(c).strip().lower(): c for c in frame.columns}
    if not any(key in columns for key in LONG_FRAME_KEYS):  # a plain candle file
        from marketsynth.data.io import read_bars_file

        seq_len = seq_len or DEFAULT_SEQ_LEN
        bars = read_bars_file(path)
        windows = candle_windows(bars, seq_len)
        text = f"{path} ({len(bars):,} candles cut into {len(windows):,} windows of {seq_len} bars)"
    else:
        frame = frame.rename(columns={original: key for key, original in columns.items()})
        if "ret" in columns and "open" not in columns:
            raise DataError(f"{path} holds model-space features, not candles; generate it without --normalized")
        try:
            windows = windows_from_long_frame(frame)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        length = windows.shape[1]
        if seq_len is not None and seq_len != length:
            raise DataError(f"--seq-len is {seq_len} but the synthetic samples in {path} have {length} bars each; "
                            f"pass --seq-len {length}, or generate with --length {seq_len}")
        seq_len = length
        text = f"{path} ({len(windows):,} generated samples of {length} bars)"
    if len(windows) < MIN_SYNTHETIC_WINDOWS:
        raise DataError(f"{path} gives only {len(windows)} synthetic window(s) of {seq_len} bars; the evaluation "
                        f"needs at least {MIN_SYNTHETIC_WINDOWS} (generate more with --num-samples)")
    return windows, seq_len, text


def real_windows_from_bars(bars: pd.DataFrame, seq_len: int, interval: str | None) -> np.ndarray:
    """Every gap-free window of ``seq_len`` bars, or a DataError when there are too few for the evaluation."""
    from marketsynth.evaluation import candle_windows

    needed = max(20, 3 * seq_len)  # the held-out split for TSTR and memorization needs room
    try:
        windows = candle_windows(bars, seq_len, timeframe=interval)
    except DataError:
        windows = np.empty((0, seq_len, 5))
    if len(windows) < needed:
        raise DataError(f"the real data gives only {len(windows)} window(s) of {seq_len} bars ({len(bars)} candles); "
                        f"the evaluation needs at least {needed}: use a longer period or a smaller --seq-len")
    return windows


def _check_outputs(report: Path | None, json_path: Path | None, model: Path | None) -> None:
    """Fail before the slow part: output names and folders, and the model directory."""
    if report is not None:
        if report.suffix.lower() not in (".html", ".htm"):
            raise ConfigError(f"--report {report}: use a file name ending in .html")
        if not report.parent.is_dir():
            raise ConfigError(f"--report {report}: folder {report.parent} does not exist")
    if json_path is not None and not json_path.parent.is_dir():
        raise ConfigError(f"--json {json_path}: folder {json_path.parent} does not exist")
    if model is not None and not model.is_dir():
        raise ConfigError(f"--model {model}: no such checkpoint directory (the folder 'marketsynth train' wrote)")


def _describe_real(data, n_windows: int) -> str:
    where, described = getattr(data.source, "path", None) or data.label, data.description
    span = ""
    if described.get("start") and described.get("end"):
        span = (f", {pd.Timestamp(described['start']):%Y-%m-%d %H:%M} → "
                f"{pd.Timestamp(described['end']):%Y-%m-%d %H:%M} UTC")
    return f"{where} ({len(data.bars):,} candles{span}; {n_windows:,} windows)"
