"""Running the trading service as a subprocess against the fake exchange, whose market clock follows the replay
(the service PUTs each replay time to a small clock server here; ``--replay-clock-url``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import yaml

KEY, SECRET = "soak-key-0123456789", "soak-secret-0123456789abcdef"


class ClockServer:
    """PUT an ISO time to ``url`` and the fake exchange's market clock moves there."""

    def __init__(self, fake):
        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                length = int(self.headers.get("Content-Length") or 0)
                fake.now = pd.Timestamp(self.rfile.read(length).decode())
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/clock"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def write_config(folder: Path, *, store: str, base_url: str, risk: dict | None = None) -> Path:
    config = {"trade": {"mode": "live", "exchange": "bybit", "base_url": base_url, "store": store,
                        "capital": 10_000, "http_port": 0, "history_bars": 40,
                        "markets": [{"symbol": "BTCUSDT", "interval": "1h", "strategy": "sma-crossover",
                                     "params": {"fast": 5, "slow": 20}}],
                        "risk": risk or {}}}
    path = folder / "trade.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_service(config: Path, start, end, clock_url: str, *, crash_at: str | None = None, cwd: Path,
                  live: bool = True) -> subprocess.Popen:
    env = {**os.environ, "MARKETSYNTH_BYBIT_API_KEY": KEY, "MARKETSYNTH_BYBIT_API_SECRET": SECRET,
           "MARKETSYNTH_NO_PROGRESS": "1"}
    env.pop("MARKETSYNTH_CRASH_AT", None)
    if crash_at:
        env["MARKETSYNTH_CRASH_AT"] = crash_at
    args = [sys.executable, "-m", "marketsynth.cli.app", "trade", "--config", str(config),
            "--live" if live else "--paper", "--replay", "--start", str(start), "--end", str(end),
            "--replay-clock-url", clock_url]
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
