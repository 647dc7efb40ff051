"""``marketsynth run`` and ``marketsynth compare`` end to end through the CLI entry point.

The post-hoc classifiers run with a short protocol here (the metrics' own tests cover the real one), so the whole
pipeline — fetch or load, train, generate, evaluate, report — takes seconds per run.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pandas as pd
import pytest

from marketsynth import api
from marketsynth.cli.app import main
from marketsynth.data.store import open_store
from marketsynth.evaluation import metrics, report_sections
from marketsynth.testing import FakeExchange
from tests.cli_helpers import assert_one_line_error as one_line_error
from tests.cli_helpers import run

QUICK = metrics.Protocol("default", 40, 40, batch_size=128, lr=1e-2, patience=1, check_every=20,
                         predict_from_all_columns=True)


@pytest.fixture(autouse=True)
def quick_evaluation(monkeypatch):
    monkeypatch.setitem(metrics.PROTOCOLS, "default", QUICK)
    monkeypatch.setattr(report_sections, "TSNE_WINDOWS", 60)


def assert_valid_candles(frame: pd.DataFrame) -> None:
    columns = ["sample_id", "timestep", "open", "high", "low", "close", "volume"]
    assert list(frame.columns) in (columns, [*columns, "bar_of_day"])  # the clock of models with a daily cycle
    o, h, low, c, v = (frame[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    assert np.isfinite(frame[["open", "high", "low", "close", "volume"]].to_numpy()).all()
    assert (h >= np.maximum(o, c)).all() and (np.minimum(o, c) >= low).all() and (low > 0).all() and (v >= 0).all()


@pytest.fixture(scope="module")
def sp500_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "demo"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(metrics.PROTOCOLS, "default", QUICK)
        patch.setattr(report_sections, "TSNE_WINDOWS", 60)
        code = main(["run", "--sample", "sp500", "--model", "garch", "--num-samples", "300", "--out", str(out),
                     "--diagnose"])
    assert code == 0
    return out


def test_run_on_the_sp500_sample_writes_every_output(sp500_run):
    report = sp500_run / "report.html"
    assert report.is_file() and "garch" in report.read_text(encoding="utf-8")
    metrics_json = json.loads((sp500_run / "metrics.json").read_text())
    names = {r["name"] for r in metrics_json["records"]}
    assert {"discriminative score (all bar features)", "memorization", "candle validity"} <= names
    assert metrics_json["n_synthetic"] == 300 and metrics_json["n_train"] > metrics_json["n_real"]
    synthetic = pd.read_csv(sp500_run / "synthetic.csv")
    assert_valid_candles(synthetic)
    assert synthetic["sample_id"].nunique() == 300 and synthetic["timestep"].nunique() == 24
    checkpoint = api.load(sp500_run / "checkpoint")
    assert checkpoint.model.name == "garch"
    assert_valid_candles(api.sample(checkpoint, 3, seed=1))
    record = json.loads((sp500_run / "run.json").read_text())
    assert record["status"] == "complete" and record["source"] == {"kind": "sample", "name": "sp500", "start": None,
                                                                   "end": None}
    assert checkpoint.meta["kind"] == "sample" and checkpoint.meta["name"] == "sp500"  # the data can be read again
    assert record["split"]["train"]["end"] < record["split"]["test"]["start"]  # chronological, no shared bar
    assert "discriminative score (all bar features)" in record["reference"]
    assert record["settings"]["diagnose"] and metrics_json["diagnosis"]["findings"]  # --diagnose
    assert metrics_json["diagnosis"]["daily"]["real"] is None  # daily bars: no daily cycle
    assert "What gives the synthetic windows away" in report.read_text(encoding="utf-8")


def test_run_defaults_to_the_autoregressive_model(btc_csv, tmp_path):
    small = tmp_path / "btc.csv"
    pd.read_csv(btc_csv, nrows=1500).to_csv(small, index=False)
    out = tmp_path / "run"
    code = main(["run", "--csv", str(small), "--epochs", "1", "--num-samples", "200", "--out", str(out)])
    assert code == 0
    record = json.loads((out / "run.json").read_text())
    assert record["settings"]["model"] == "autoregressive" and record["status"] == "complete"
    assert api.load(out / "checkpoint").model.name == "autoregressive"
    synthetic = pd.read_csv(out / "synthetic.csv")
    assert_valid_candles(synthetic)
    assert synthetic["bar_of_day"].between(0, 23).all()  # hourly bars: paths start at drawn hours of the day


def test_run_refuses_to_replace_a_run_and_a_failed_overwrite_keeps_it(sp500_run, capsys):
    before = (sp500_run / "metrics.json").read_bytes()
    code, _, err = run(capsys, "run", "--sample", "sp500", "--model", "garch", "--out", sp500_run)
    line = one_line_error(code, err)
    assert "already holds a complete run" in line and "--overwrite" in line and "--resume" in line
    # a run that fails half-way (too few bars for these windows) leaves the earlier run as it was
    code, _, err = run(capsys, "run", "--sample", "sp500", "--model", "garch", "--seq-len", "4000", "--overwrite",
                       "--out", sp500_run)
    assert "too few" in one_line_error(code, err)
    assert (sp500_run / "metrics.json").read_bytes() == before
    assert not list(sp500_run.parent.glob(f".{sp500_run.name}.*"))


def test_resume_continues_the_run_with_its_own_settings_and_candles(sp500_run, capsys):
    code, _, err = run(capsys, "run", "--resume", "--model", "dcgan", "--out", sp500_run)
    assert "--resume continues" in one_line_error(code, err) and "--model garch" in err
    code, stdout, err = run(capsys, "run", "--resume", "--num-samples", "300", "--out", sp500_run)
    assert code == 0, err
    assert "garch on sample sp500" in stdout
    assert json.loads((sp500_run / "run.json").read_text())["status"] == "complete"


def test_run_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "run", "--sample", "sp500", "--model", "garch", "--out", tmp_path)
    assert "not a marketsynth run directory" in one_line_error(code, err)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_run_fetches_from_the_exchange_into_the_store(btc_1h_bars, tmp_path, capsys):
    bars = btc_1h_bars.iloc[20_000:20_600].reset_index(drop=True)
    start, end = bars["time"].iloc[0], bars["time"].iloc[-1] + pd.Timedelta(hours=1)
    store, out = tmp_path / "candles.duckdb", tmp_path / "btc"
    with FakeExchange({"BTCUSDT": bars}) as fake:
        code, stdout, err = run(capsys, "run", "--exchange", "bybit", "--symbol", "BTCUSDT", "--interval", "1h",
                                "--start", f"{start:%Y-%m-%dT%H:%M}", "--end", f"{end:%Y-%m-%dT%H:%M}",
                                "--base-url", fake.base_url, "--store", store, "--model", "garch", "--out", out)
    assert code == 0, err
    assert f"report:     {out / 'report.html'}" in stdout and "checkpoint:" in stdout and "synthetic:" in stdout
    assert (out / "report.html").is_file()
    record = json.loads((out / "run.json").read_text())
    assert record["source"]["exchange"] == "bybit" and record["data"]["bars"] == 600
    assert len(pd.read_csv(out / "data.csv")) == 600
    assert_valid_candles(pd.read_csv(out / "synthetic.csv"))
    with open_store(store, read_only=True) as db:
        assert len(db.read_bars("bybit", "BTCUSDT", "1h")) == 600


def test_unreachable_exchange_is_one_line_that_suggests_offline_data(tmp_path, capsys):
    """Also with a retry: the retry warning goes into the progress row, not onto a line of its own."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _, err = run(capsys, "run", "--base-url", f"http://127.0.0.1:{port}", "--retries", "2", "--model", "garch",
                       "--store", tmp_path / "s.duckdb", "--out", tmp_path / "run")
    line = one_line_error(code, err)
    assert "cannot reach" in line and "--sample" in line and "--csv" in line
    assert not (tmp_path / "run").exists()  # nothing was fetched: no half-made run directory is left behind


def test_unknown_sample_is_one_line_listing_the_samples(tmp_path, capsys):
    code, _, err = run(capsys, "run", "--sample", "sp5000", "--out", tmp_path / "run")
    line = one_line_error(code, err)
    assert "unknown sample 'sp5000'" in line and "sp500" in line and "nasdaq" in line
    assert not (tmp_path / "run").exists()


def test_glow_is_refused_by_the_candle_pipeline(tmp_path, capsys):
    code, _, err = run(capsys, "run", "--sample", "sp500", "--model", "glow", "--out", tmp_path / "run")
    assert "cannot run this pipeline" in one_line_error(code, err)


def test_compare_writes_markdown_json_and_html_with_every_model(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, err = run(capsys, "compare", "--sample", "sp500", "--models", "garch,dcgan", "--epochs", "1",
                            "--out", out)
    assert code == 0, err
    table = (out / "comparison.md").read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["garch", "dcgan", "real (training period)"]
    result = json.loads((out / "comparison.json").read_text())
    assert [r["model"] for r in result["rows"]] == ["garch", "dcgan", "real (training period)"]
    assert {(r["model"], r["seed"]) for r in result["runs"]} == {("garch", 0), ("garch", 1), ("dcgan", 0),
                                                                  ("dcgan", 1)}
    dcgan = result["rows"][1]
    assert dcgan["epochs"] == 1 and dcgan["stability"] is not None and 0 <= dcgan["discriminative"] <= 0.5
    for key in ("tstr_ratio", "fidelity", "coherence", "predictive", "memorization", "train_seconds"):
        assert isinstance(dcgan[key], float), key
    html = (out / "comparison.html").read_text(encoding="utf-8")
    assert "dcgan" in html and "garch" in html and "temporal coherence" in html
    assert "| garch |" in stdout and f"html: {out / 'comparison.html'}" in stdout
    code, _, err = run(capsys, "compare", "--sample", "sp500", "--models", "garch", "--out", out)
    assert "already holds a complete compare" in one_line_error(code, err) and "--overwrite" in err


def test_compare_refuses_models_that_do_not_make_candles_before_any_work(tmp_path, capsys):
    code, _, err = run(capsys, "compare", "--sample", "sp500", "--models", "garch,glow", "--out", tmp_path / "c")
    assert "glow cannot be compared" in one_line_error(code, err)
    assert not (tmp_path / "c").exists()
