"""``marketsynth trade``: replay through the CLI, status and resume from the store, the DuckDB lock, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from marketsynth.data.store import open_store
from marketsynth.testing.fake_market import read_kline_csv
from tests.cli_helpers import assert_one_line_error, run


@pytest.fixture
def store_file(tmp_path, btc_csv):
    path = tmp_path / "s.duckdb"
    with open_store(path) as store:
        store.write_bars("bybit", "BTCUSDT", "1h", read_kline_csv(btc_csv).iloc[:600])
    return path


def config(tmp_path, store_path, **trade) -> str:
    body = {"store": str(store_path), "http_port": 0, "history_bars": 20,
            "markets": [{"symbol": "BTCUSDT", "interval": "1h", "strategy": "sma-crossover",
                         "params": {"fast": 5, "slow": 20}}], **trade}
    path = tmp_path / "trade.yaml"
    path.write_text(yaml.safe_dump({"trade": body}))
    return str(path)


def test_paper_replay_then_status_and_resume_from_the_store(capsys, tmp_path, store_file):
    cfg = config(tmp_path, store_file, risk={"max_drawdown": 0.01})
    code, out, err = run(capsys, "trade", "--config", cfg, "--replay", "--start", "2019-09-10",
                         "--end", "2019-09-25")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stats"]["bars"] == 15 * 24 and summary["risk"]["halted"]  # a 1 % drawdown halts it
    assert "risk control max_drawdown" in err or summary["stats"]["risk_actions"]
    code, out, err = run(capsys, "trade", "status", "--config", cfg)
    report = json.loads(out)
    assert code == 0 and report["running"] is False and report["risk"]["halted"] is True
    assert report["last_signal"]["BTCUSDT:1h"]["bar"].startswith("2019-09-24 23:00")
    code, out, err = run(capsys, "trade", "resume", "--config", cfg)
    assert code == 0 and "resumed" in out
    code, out, err = run(capsys, "trade", "status", "--config", cfg)
    assert json.loads(out)["risk"]["halted"] is False


def test_status_over_http_while_running_and_the_store_is_held(capsys, tmp_path, store_file):
    cfg = config(tmp_path, store_file)
    process = subprocess.Popen([sys.executable, "-m", "marketsynth.cli.app", "trade", "--config", cfg, "--replay",
                                "--start", "2019-09-10", "--end", "2019-10-20", "--speed", "36000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "MARKETSYNTH_NO_PROGRESS": "1"})
    try:
        lock = store_file.with_name(store_file.name + ".service.json")
        for _ in range(300):  # wait for the service to start (no timing is asserted)
            if lock.exists() and json.loads(lock.read_text()).get("port"):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        code, out, err = run(capsys, "trade", "status", "--config", cfg)
        assert code == 0, err
        assert json.loads(out).get("mode") == "paper" or json.loads(out).get("starting")
        code, out, err = run(capsys, "data", "check", "--store", str(store_file))
        assert_one_line_error(code, err, "held by the trading service", "PostgreSQL")
        port = json.loads(lock.read_text())["port"]
        for _ in range(100):  # the replay needs a few bars before every series has a sample (no timing asserted)
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            if "marketsynth_signal_latency_seconds_count" in metrics and "marketsynth_unrealised_pnl_usdt " in metrics:
                break
            time.sleep(0.1)
        for name in ("marketsynth_equity_usdt", "marketsynth_signal_latency_seconds_count",
                     "marketsynth_realised_pnl_usdt", "marketsynth_data_lag_seconds", "marketsynth_orders_total",
                     "marketsynth_position_units"):
            assert name in metrics, name
        assert any(line.startswith("marketsynth_signal_latency_seconds_count ") and float(line.split()[-1]) > 0
                   for line in metrics.splitlines())
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code in (200, 503)
    finally:
        process.kill()
        process.communicate()


@pytest.mark.parametrize("trade,phrase", [
    ({"markets": [{"symbol": "BTCUSDT", "interval": "1h", "strategy": "sma-crosover"}]}, "did you mean"),
    ({"markets": [{"symbol": "NOPEUSDT", "interval": "1h", "strategy": "sma-crossover"}]}, "NOPEUSDT"),
    ({"markets": [{"symbol": "BTCUSDT", "interval": "1h", "strategy": "sma-crossover", "model": "/nope"}]},
     "not found"),
    ({"mode": "live"}, "MARKETSYNTH_BYBIT_API_KEY"),
    ({"store": "/no/such/folder/s.duckdb"}, "does not exist"),
])
def test_bad_input_is_one_line(capsys, tmp_path, store_file, monkeypatch, trade, phrase):
    monkeypatch.delenv("MARKETSYNTH_BYBIT_API_KEY", raising=False)
    cfg = config(tmp_path, store_file, **trade)
    code, out, err = run(capsys, "trade", "--config", cfg, "--replay", "--start", "2019-09-10", "--end", "2019-09-11")
    assert_one_line_error(code, err, phrase)


def test_a_key_file_readable_by_others_is_refused(capsys, tmp_path, store_file):
    keys = tmp_path / "keys.yaml"
    keys.write_text("bybit: {api_key: abcdefgh, api_secret: ijklmnop}\n")
    keys.chmod(0o644)
    cfg = config(tmp_path, store_file, mode="live", secrets_file=str(keys))
    code, out, err = run(capsys, "trade", "--config", cfg, "--replay", "--start", "2019-09-10", "--end", "2019-09-11")
    assert_one_line_error(code, err, "readable by others", "chmod 600")
