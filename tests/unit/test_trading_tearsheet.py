"""The tearsheet page: every section, escaping, embedded figures, side files and the edge cases."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from marketsynth.errors import DataError
from marketsynth.trading import performance as perf
from marketsynth.trading.tearsheet import build_tearsheet, fmt, write_tearsheet

SECTIONS = ("Summary", "Statistics", "Equity", "Returns", "Trades", "Conventions")


def backtest(days=60, seed=0, trades=True, price=True):
    times = pd.date_range("2024-01-01", periods=24 * days, freq="h", tz="UTC")
    rng = np.random.default_rng(seed)
    price_path = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, len(times))))
    position = (np.arange(len(times)) // 24 % 2).astype(float)
    step = np.r_[0, position[:-1] * np.diff(price_path) / price_path[:-1]]
    frame = pd.DataFrame({"time": times, "equity": 1000 * np.cumprod(1 + step), "exposure": position})
    if price:
        frame["price"] = price_path
    table = None
    if trades:
        entries, exits = times[24::48][:-1], times[48::48]
        table = pd.DataFrame({"entry_time": entries, "exit_time": exits, "pnl": rng.normal(1, 5, len(exits)),
                              "return": rng.normal(0.001, 0.005, len(exits))})
    return SimpleNamespace(equity=frame, trades=table)


def test_the_page_has_every_section_and_figure_and_writes_its_files(tmp_path):
    path = write_tearsheet(tmp_path / "tearsheet.html", backtest(), title="SMA cross")
    text = path.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in text
    for figure in ("equity", "underwater", "monthly_returns", "rolling_sharpe", "trade_pnl", "exposure"):
        assert (tmp_path / "tearsheet_files" / f"{figure}.png").read_bytes().startswith(b"\x89PNG")
    assert text.count("data:image/png;base64,") == 6
    assert "buy-and-hold" in text and "Probabilistic Sharpe" in text and "Best and worst trades" in text
    written = pd.read_csv(tmp_path / "tearsheet_files" / "trades.csv")
    assert len(written) == 29 and list(written.columns) == ["entry_time", "exit_time", "pnl", "return"]
    assert "http://" not in text and "https://" not in text  # self-contained


def test_text_from_users_and_data_is_escaped():
    result = backtest(days=30)
    page = build_tearsheet(result, title="<script>alert(1)</script> & co")
    from marketsynth.reports import render_page

    html = render_page(page)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html


def test_every_stat_has_a_row_with_a_verdict_and_buy_and_hold_is_always_in_the_market():
    page = build_tearsheet(backtest())
    table = next(block for section in page.sections if section.title == "Statistics" for block in section.blocks)
    rows = {row.name: row for row in table.rows if not isinstance(row, str)}
    assert {"Sharpe ratio", "Sortino ratio", "Calmar ratio", "Max drawdown", "Max drawdown duration", "Win rate",
            "Profit factor", "Expectancy", "SQN", "Exposure", "Trades", "Average trade duration", "Daily VaR 95%",
            "Daily CVaR 95%", "Probabilistic Sharpe", "CAGR", "Total return", "Annualised volatility"} <= set(rows)
    assert rows["Exposure"].values == ["50.00%", "100.00%"]
    assert rows["Win rate"].values[1] == "—"
    assert all(row.badge.label in ("good", "fair", "poor", "check", "info") for row in rows.values())


def test_stats_given_on_the_result_are_shown_as_they_are():
    result = backtest(days=30)
    result.stats = {**perf.summary(result), "sharpe": 3.5}
    page = build_tearsheet(result)
    table = next(block for section in page.sections if section.title == "Statistics" for block in section.blocks)
    sharpe = next(row for row in table.rows if not isinstance(row, str) and row.name == "Sharpe ratio")
    assert sharpe.values[0] == "3.50"
    assert sharpe.badge.label == "check" and sharpe.badge.css == "fair"


def test_no_trades_a_flat_curve_and_no_price_still_render(tmp_path):
    times = pd.date_range("2024-01-01", periods=24 * 5, freq="h", tz="UTC")
    flat = SimpleNamespace(equity=pd.DataFrame({"time": times, "equity": 1000.0}), trades=None)
    text = write_tearsheet(tmp_path / "flat.html", flat).read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in text
    assert "No trades" in text and "too few for a rolling Sharpe" in text
    assert "undefined: the equity is flat" in text.replace("Undefined", "undefined")
    assert "buy-and-hold</th>" not in text  # no price column, no benchmark given
    assert not (tmp_path / "flat_files" / "trades.csv").exists()


def test_a_given_benchmark_is_rescaled_to_the_starting_equity():
    result = backtest(days=30, price=False)
    benchmark = pd.Series(np.linspace(50, 100, 24 * 30), index=result.equity["time"])
    page = build_tearsheet(result, benchmark_equity=benchmark)
    table = next(block for section in page.sections if section.title == "Statistics" for block in section.blocks)
    total = next(row for row in table.rows if not isinstance(row, str) and row.name == "Total return")
    assert total.values[1] == "+100.00%"


def test_a_result_without_an_equity_frame_is_a_data_error():
    with pytest.raises(DataError, match="equity"):
        build_tearsheet(SimpleNamespace(trades=None))


def test_formats():
    assert fmt(None, "pct") == "—" and fmt(float("nan"), "ratio") == "—"
    assert fmt(0.1234, "pct") == "+12.34%" and fmt(0.1234, "frac") == "12.34%"
    assert fmt(0.5, "days") == "12.0 h" and fmt(3.25, "days") == "3.2 d"
    assert fmt(1234, "int") == "1,234" and fmt(-3.5, "money") == "-3.50"
    assert re.fullmatch(r"0\.\d{3}", fmt(0.12345, "prob"))
