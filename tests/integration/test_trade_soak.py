"""Soak and fault test of the trading service (issue 12): a replay of 2,000+ bars against the fake exchange in
``--live`` mode, with random order faults and kill -9 restarts at random points — deterministic crash points
between "stored pending" and "sent" and between "sent" and "acknowledged", and SIGKILLs at random moments.

Afterwards: no client id was filled twice, every intended order exists exactly once on the exchange, the store's
positions equal the exchange's, and the equity equals that of an uninterrupted run to the cent.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pandas as pd
import pytest

from marketsynth.data.store import open_store
from marketsynth.testing import FakeExchange
from marketsynth.testing.fake_market import read_kline_csv
from tests.integration.trade_harness import KEY, SECRET, ClockServer, start_service, write_config

BARS = int(os.environ.get("MARKETSYNTH_SOAK_BARS", "2000"))
FAULTS = ("timeout_after_store", "unknown_after_store", "500", "503", "429")


def _run(bars, folder, name, *, crashes=(), kills=0, faults=0, seed=0):
    """One replay; returns (store positions, store orders, fake exchange orders, position, stats)."""
    rng = random.Random(seed)
    folder = folder / name
    folder.mkdir()
    start = bars["time"].iat[40]
    end = start + pd.Timedelta(hours=BARS)
    with FakeExchange({"BTCUSDT": bars}) as fake:
        fake.trading.add_key("bybit", KEY, SECRET)
        fake.now = start
        done = threading.Event()
        injected = []

        def inject():  # one fault at a time, at random moments: each is taken by the next order request
            while not done.wait(rng.uniform(0.3, 1.5)) and len(injected) < faults:
                if len(fake.trading.faults) == 0:
                    kind = rng.choice(FAULTS + ("not_visible",))
                    fake.trading.faults.add(kind, on="query" if kind == "not_visible" else "place")
                    injected.append(kind)

        injector = threading.Thread(target=inject, daemon=True)
        injector.start()
        clock = ClockServer(fake)
        config = write_config(folder, store=str(folder / "store.duckdb"), base_url=fake.base_url)
        restarts, started = 0, time.perf_counter()
        plan = [("crash", c) for c in crashes] + [("kill", None)] * kills
        rng.shuffle(plan)
        for kind, point in plan:
            process = start_service(config, start, end, clock.url, crash_at=point, cwd=folder)
            if kind == "kill":
                time.sleep(rng.uniform(2.0, 6.0))  # wherever it is then
                process.send_signal(signal.SIGKILL)
            out, err = process.communicate(timeout=300)
            if process.returncode == 0:  # it reached the end before this crash point: the run is complete
                break
            assert process.returncode in (137, -9), err[-2000:]
            restarts += 1
        process = start_service(config, start, end, clock.url, cwd=folder)
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        seconds = time.perf_counter() - started
        exchange_orders = fake.trading.orders("bybit")
        position = fake.trading.position("bybit", "BTCUSDT")
        done.set()
        injector.join()
        taken = len(injected) - len(fake.trading.faults)
        clock.stop()
    with open_store(folder / "store.duckdb", read_only=True) as store:
        positions, orders = store.positions(), store.orders()
    return positions, orders, exchange_orders, position, {"restarts": restarts, "seconds": seconds,
                                                          "faults": taken}


def test_kill_9_restarts_and_faults_change_nothing(tmp_path, btc_csv):
    bars = read_kline_csv(btc_csv).iloc[: BARS + 80].reset_index(drop=True)
    ref_positions, ref_orders, ref_exchange, ref_position, ref = _run(bars, tmp_path, "uninterrupted")
    rng = random.Random(11)
    most = max(2, BARS // 100)  # sma(5, 20) trades about every 13 bars: each crash point is reached
    crashes = [f"{point}:{rng.randint(1, most)}" for point in ("after_pending", "after_send", "after_pending",
                                                                "after_send", "after_fill")]
    positions, orders, exchange, position, got = _run(bars, tmp_path, "interrupted", crashes=crashes, kills=1,
                                                      faults=40, seed=7)
    assert got["restarts"] >= (5 if BARS >= 2000 else 1)
    # no client id filled twice; every intended order exactly once on the exchange
    ids = [o.client_id for o in exchange]
    assert len(ids) == len(set(ids))
    filled = orders[orders["status"] == "filled"]["client_id"].tolist()
    assert sorted(filled) == sorted(o.client_id for o in exchange if o.status == "FILLED")
    missing = set(ref_orders[ref_orders["status"] == "filled"]["client_id"]) - set(filled)
    assert not missing, orders[orders["client_id"].isin(missing)][["client_id", "status", "note"]].to_string()
    assert sorted(filled) == sorted(ref_orders[ref_orders["status"] == "filled"]["client_id"])
    # the store's positions equal the exchange's; equity equals the uninterrupted run's to the cent
    assert positions["quantity"].sum() == pytest.approx(position, abs=1e-12)
    assert position == pytest.approx(ref_position, abs=1e-12)
    assert round(positions["equity"].sum(), 2) == round(ref_positions["equity"].sum(), 2)
    print(f"\nsoak: {BARS} bars, {len(filled)} orders filled, {got['faults']} faults, {got['restarts']} restarts, "
          f"{got['seconds']:.1f} s (uninterrupted {ref['seconds']:.1f} s)")
