"""The HTML report: self-contained, escaped, every section present, PNGs beside it, written atomically."""

from __future__ import annotations

import base64
import dataclasses
import functools
import html
import json
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from marketsynth.errors import ConfigError, DataError, ModelError  # noqa: E402
from marketsynth.evaluation import PROTOCOLS, evaluate  # noqa: E402
from marketsynth.evaluation.records import EvaluationResult, MetricRecord  # noqa: E402
from marketsynth.evaluation.report import format_values, write_report  # noqa: E402
from marketsynth.reports import Figure, Paragraph, Section, Strong, Table, figure_png  # noqa: E402
from tests.unit.evaluation_helpers import random_walk_candles  # noqa: E402

TINY = dataclasses.replace(PROTOCOLS["default"], discriminative_iterations=10, predictive_iterations=10)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("Summary", "Metrics", "Sample paths", "Return distribution", "Autocorrelation and volatility clustering",
            "Windows side by side: PCA and t-SNE", "Privacy: does the generator copy?", "Training", "Notes")


@functools.cache
def windows() -> tuple[np.ndarray, np.ndarray]:
    return random_walk_candles(80, 12, seed=0), random_walk_candles(40, 12, seed=1, vol=0.02)


@functools.cache
def result() -> EvaluationResult:
    real, synthetic = windows()
    return evaluate(real, synthetic, seq_len=12, repeats=1, protocol=TINY, max_windows=80)


def timegan_dir(path):
    """A checkpoint directory as far as the report reads it: config.json, meta.json, history.csv with phases."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model": "timegan", "epoch": 9, "model_config": {"seq_len": 12},
                                                  "training": {"representation": "log-returns"}}))
    (path / "meta.json").write_text(json.dumps({"file": "btc<1h>.csv", "start": "2021-01-01T00:00:00+00:00",
                                                "end": "2021-02-01T00:00:00+00:00", "windows": 1234}))
    rows = [{"epoch": e, "phase": 0.0 if e <= 3 else 1.0 if e <= 6 else 2.0, "seconds": 1.0,
             "e_loss": 10 / e if e <= 3 or e > 6 else None, "s_loss": 0.1 / e if 3 < e <= 6 else None,
             "g_loss": 5.0 + e if e > 6 else None} for e in range(1, 10)]
    pd.DataFrame(rows).to_csv(path / "history.csv", index=False)
    return path


def embedded_images(text: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)]


def test_full_report_is_one_self_contained_file_with_every_section(tmp_path):
    real, synthetic = windows()
    path = write_report(tmp_path / "report.html", title="BTC vs model", result=result(), real_windows=real,
                        synthetic_windows=synthetic, model_dir=timegan_dir(tmp_path / "run"),
                        summary={"real data": "BTCUSDT_1h.csv"})
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    for external in ('src="http', "src='http", "<link", "<script", "@import", "url("):
        assert external not in text
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html.unescape(text), title
    for record in result().records:
        assert record.name in html.unescape(text)
    images = embedded_images(text)
    files = sorted((tmp_path / "report_files").iterdir())
    assert {f.name for f in files} == {"sample_paths.png", "returns.png", "dependence.png", "embedding.png",
                                       "memorization.png", "training_curves.png"}
    assert len(images) == len(files) and all(image.startswith(PNG_MAGIC) for image in images)
    assert sorted(images) == sorted(f.read_bytes() for f in files)
    assert "embedding" in text and "supervised" in text  # TimeGAN phases named in the text
    assert "1,234" in text and "2021-01-01 00:00 UTC" in text  # model metadata, formatted
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_everything_from_data_or_users_is_escaped(tmp_path):
    record = MetricRecord("Return statistics", "mean <b>return</b>", 0.001, 0.002, 0.05, "closer", "fair",
                          "a < b & \"quoted\" <script>alert(1)</script>")
    evil = EvaluationResult([record], "default", 12, 10, 10, None, 0, 1.0, notes=["note <img src=x>"])
    path = write_report(tmp_path / "r.html", title="<script>alert('title')</script>", result=evil,
                        summary={"<i>key</i>": "value & <b>bold</b>"})
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text and "<img src=x>" not in text and "<b>bold</b>" not in text
    assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in text
    assert "mean &lt;b&gt;return&lt;/b&gt;" in text and "note &lt;img src=x&gt;" in text
    assert "&lt;i&gt;key&lt;/i&gt;" in text and "value &amp; &lt;b&gt;bold&lt;/b&gt;" in text


def test_a_report_of_sections_only_renders_their_blocks_and_names_files_safely(tmp_path):
    fig = plt.figure()
    fig.add_subplot().plot([1, 2, 3])
    png = figure_png(fig)
    assert png.startswith(PNG_MAGIC) and not plt.get_fignums()  # rendered and closed
    sections = [Section("Risk <VaR>", [Paragraph(["some ", Strong("bold <b>"), " text"]),
                                       Figure(png, "var plot.png"), Figure(png, "var plot.png")]),
                Section("Stress", [Table([["1"]]), Figure(png, "../../escape.png")])]
    path = write_report(tmp_path / "risk.html", title="Risk only", sections=sections)
    text = path.read_text(encoding="utf-8")
    assert "<p>some <b>bold &lt;b&gt;</b> text</p>" in text and "<h2>Risk &lt;VaR&gt;</h2>" in text
    assert "Metrics" not in text and "Notes" not in text
    assert sorted(p.name for p in (tmp_path / "risk_files").iterdir()) == ["escape.png", "var_plot-2.png",
                                                                           "var_plot.png"]
    assert len(embedded_images(text)) == 3


def test_windows_without_a_result_still_give_the_plots(tmp_path):
    real, synthetic = windows()
    text = write_report(tmp_path / "w.html", title="windows", real_windows=real,
                        synthetic_windows=synthetic).read_text(encoding="utf-8")
    for title in ("Sample paths", "Return distribution", "Autocorrelation", "PCA and t-SNE"):
        assert title in text
    assert "Metrics" not in text and len(embedded_images(text)) == 4


def test_one_pass_models_show_fit_statistics_and_bad_model_dirs_fail(tmp_path):
    run = tmp_path / "garch"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "garch"}))
    pd.DataFrame([{"loglik": -676.4, "alpha": 0.08, "beta": 0.9}]).to_csv(run / "history.csv", index=False)
    text = write_report(tmp_path / "g.html", title="garch", model_dir=run).read_text(encoding="utf-8")
    assert "Fitted in one pass" in text and "loglik" in text and "-676" in text
    with pytest.raises(ModelError, match="not found"):
        write_report(tmp_path / "g.html", title="garch", model_dir=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a marketsynth checkpoint"):
        write_report(tmp_path / "g.html", title="garch", model_dir=tmp_path / "empty")


def test_rewriting_replaces_old_images_and_refuses_a_foreign_folder(tmp_path):
    png = figure_png(plt.figure())
    write_report(tmp_path / "r.html", title="one", sections=[Section("A", [Figure(png, "old.png")])])
    write_report(tmp_path / "r.html", title="two", sections=[Section("B", [Figure(png, "new.png")])])
    assert [p.name for p in (tmp_path / "r_files").iterdir()] == ["new.png"]
    (tmp_path / "r_files" / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="holds other files"):
        write_report(tmp_path / "r.html", title="three", sections=[])
    assert "two" in (tmp_path / "r.html").read_text() and (tmp_path / "r_files" / "mine.txt").exists()
    with pytest.raises(ConfigError, match=r"\.html"):
        write_report(tmp_path / "r.pdf", title="x")
    with pytest.raises(DataError, match="does not exist"):
        write_report(tmp_path / "nowhere" / "r.html", title="x")


def test_values_are_formatted_as_the_explanations_speak_of_them():
    def values(name, real, synthetic, distance, **details):
        return format_values(MetricRecord("g", name, real, synthetic, distance, "closer", "good", "", details))

    assert values("mean return", 0.000032, -0.000027, 0.0112) == ("+0.0032%", "-0.0027%", "0.0112")
    assert values("volatility (std of returns)", 0.00529, 0.00483, 0.088) == ("0.529%", "0.483%", "8.8%")
    assert values("volatility clustering", 0.11, 0.23, 0.119) == ("0.11", "0.23", "0.119")
    assert values("discriminative score (x)", None, 0.123, 0.123, std=0.01, runs=[0.11, 0.13]) == (
        "—", "12.3% ± 1.0%", "12.3%")
    assert values("candle validity", 1.0, 0.9991, 0.0009) == ("100.00%", "99.91%", "0.1%")
    assert values("kurtosis (excess)", 20.9, 1234.5, None) == ("20.9", "1,234", "—")
