"""Risk scenarios from real (tiny) trained checkpoints, through the library and the ``marketsynth`` CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marketsynth import api
from marketsynth.checkpoint import Checkpoint
from marketsynth.errors import ConfigError, ModelError
from marketsynth.models.base import GenerativeModel
from marketsynth.models.capabilities import Conditional
from marketsynth.representation import make_representation
from marketsynth.risk.scenarios import LESS_RISK, analyse, check_horizon, simulate_paths
from tests.cli_helpers import assert_one_line_error, run

TINY_DCGAN = {"gen_channels": [16, 8], "disc_channels": [8, 16], "latent_dim": 8, "seq_len": 8, "batch_size": 32}
TINY_GLOW = {"levels": 1, "steps_per_level": 1, "hidden": 8, "batch_size": 64}
TINY_CGAN = {"seq_len": 8, "latent_dim": 4, "hidden_size": 8, "num_layers": 1, "critic_hidden_size": 8, "n_critic": 1,
             "embed_dim": 2, "batch_size": 64}


@pytest.fixture(scope="module")
def small_csv(btc_csv, tmp_path_factory) -> Path:
    """1500 hourly candles of 2021 in the Binance export format."""
    path = tmp_path_factory.mktemp("data") / "BTCUSDT_small.csv"
    pd.read_csv(btc_csv, skiprows=range(1, 12000), nrows=1500).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def garch_dir(small_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "garch"
    api.train("garch", csv=small_csv, out=out, progress=False)
    return out


@pytest.fixture(scope="module")
def garch(garch_dir):
    return api.load(garch_dir)


@pytest.fixture(scope="module")
def bars(small_csv):
    return api.load_bars(csv=small_csv)[0]


# ---- library --------------------------------------------------------------------------------------------------
def test_scenario_returns_are_the_generated_candles_close_over_start(garch):
    paths = simulate_paths(garch, 50, 12, seed=4)
    frame = api.sample(garch, 50, seed=4, length=12, start_price=1.0)
    closes = frame.pivot(index="sample_id", columns="timestep", values="close").to_numpy()
    assert np.allclose(paths, closes - 1.0)


def test_same_seed_same_figures_and_hotter_temperature_never_smaller_losses(garch, bars):
    kwargs = dict(num=3000, horizon=24, seed=7, stress_temperatures=(1.0, 1.5, 2.0, 3.0), real_bars=bars,
                  real_source="test bars")
    first, again = analyse(garch, **kwargs), analyse(garch, **kwargs)
    assert json.dumps(first.to_dict()) == json.dumps(again.to_dict())
    assert analyse(garch, **{**kwargs, "seed": 8}).base.tail(0.95).var != first.base.tail(0.95).var
    rows = first.stress
    assert [row.temperature for row in rows] == [1.0, 1.5, 2.0, 3.0] and rows[0].label == "T=1 (base)"
    assert rows[0].changes == "nothing (the baseline)" and rows[2].changes == "temperature 2: the return shocks × 2"
    assert not any(row.flag for row in rows)
    for cool, hot in zip(rows, rows[1:], strict=False):
        for level in (0.95, 0.99):
            assert hot.tail(level).var >= cool.tail(level).var
            assert hot.tail(level).cvar >= cool.tail(level).cvar
        assert hot.worst_loss >= cool.worst_loss and hot.loss_beyond_threshold >= cool.loss_beyond_threshold
        assert hot.dist.std > cool.dist.std
    assert not any("do not widen" in note for note in first.notes)
    assert first.real is not None and first.real_note.startswith("test bars: ")
    assert first.fan.shape == (7, 25) and (first.fan[:, 0] == 0).all()
    assert (np.diff(first.fan[:, -1]) >= 0).all()  # percentile bands are ordered


def test_a_short_position_loses_on_the_upper_tail(garch):
    long = analyse(garch, num=500, horizon=6, seed=1, stress_temperatures=(1.0,))
    short = analyse(garch, num=500, horizon=6, seed=1, position=-2.0, stress_temperatures=(1.0,))
    assert np.allclose(short.pnl, -2.0 * long.pnl)
    assert short.base.worst_loss == pytest.approx(2.0 * long.pnl.max())


def test_dcgan_chains_windows_for_a_long_horizon_and_says_so(bars, tmp_path):
    result = api.train("dcgan", bars.iloc[:200], config=TINY_DCGAN, epochs=1, out=tmp_path / "dcgan",
                       progress=False)
    checkpoint = api.load(result.checkpoint)
    analysis = analyse(checkpoint, num=40, horizon=20)
    assert analysis.model["simulation"] == "chained windows"
    assert [row.label for row in analysis.stress] == ["as trained (base)"]  # no temperature, no regimes: no stress
    assert any("chains 3 independent windows" in note for note in analysis.notes)
    assert check_horizon(checkpoint, 8) is None


def test_glow_sums_iid_return_1_draws_and_says_it_ignores_dependence(small_csv, tmp_path):
    result = api.train("glow", csv=small_csv, config=TINY_GLOW, epochs=1, out=tmp_path / "glow", progress=False)
    checkpoint = api.load(result.checkpoint)
    paths = simulate_paths(checkpoint, 30, 5, seed=2)
    features = checkpoint.model.sample(30, seed=2, length=5)
    index = list(checkpoint.model.feature_names).index("return_1")
    assert np.allclose(paths, np.expm1(np.cumsum(features[:, :, index].astype(np.float64), axis=1)))
    analysis = analyse(checkpoint, num=30, horizon=5, stress_temperatures=(1.0,))
    assert analysis.model["simulation"] == "i.i.d. return_1 draws"
    assert any("ignores temporal dependence" in note for note in analysis.notes)


class _WindowOnly(GenerativeModel):
    """A window model that cannot chain windows (like a GAN whose sample refuses longer lengths)."""

    name = "window-only"
    native_long_paths = False

    def _sample(self, n, conditions, *, seed, length):
        if length > self.config.seq_len:
            raise ModelError(f"window-only cannot generate more than {self.config.seq_len} bars")
        return np.random.default_rng(seed).standard_normal((n, length, 5)).astype(np.float32)


class _Regimes(Conditional, GenerativeModel):
    """A conditional stand-in without a temperature: crash (label 2) paths drift by ``crash_drift`` (down: its
    row must show larger losses)."""

    name = "stub"
    regimes = ["bull", "bear", "crash"]
    native_long_paths = True
    crash_drift = -0.5

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []
        self.label_counts = [1] * len(self.regimes)

    def _sample(self, n, conditions, *, seed, length):
        self.seen.append(np.asarray(conditions).copy())
        out = np.random.default_rng(seed).standard_normal((n, length, 5))
        out[:, :, 1] += self.crash_drift * (np.asarray(conditions) == 2)[:, None]
        return out.astype(np.float32)


def _stub(model, bars) -> Checkpoint:
    return Checkpoint(Path("stub"), model, make_representation("log-returns").fit(bars), {})


def test_a_model_that_cannot_chain_refuses_a_longer_horizon(bars):
    checkpoint = _stub(_WindowOnly({"seq_len": 8}), bars)
    with pytest.raises(ModelError, match="longer than the 8-bar windows window-only generates.*--horizon 8 or less"):
        analyse(checkpoint, num=20, horizon=9)
    assert analyse(checkpoint, num=20, horizon=8).model["simulation"] == "one continuous path"


def test_conditional_models_get_regime_conditions_and_a_crash_stress_row(bars, garch):
    model = _Regimes({"seq_len": 8})
    analysis = analyse(_stub(model, bars), num=200, horizon=6)
    assert [(row.temperature, row.regime) for row in analysis.stress] == [(None, None), (None, "crash")]
    base, crash = analysis.stress
    assert base.label == "as trained (base)" and crash.label == "crash"
    assert crash.changes == "regime crash: the crash label" and not crash.flag
    assert crash.tail(0.95).cvar > analysis.base.tail(0.95).cvar
    assert (model.seen[-1] == 2).all() and len(model.seen[-1]) == 200
    bear = analyse(_stub(model, bars), num=50, horizon=6, regime="bear")
    assert bear.base.regime == "bear" and [r.regime for r in bear.stress] == ["bear", "crash"]
    with pytest.raises(ConfigError, match="unknown regime 'boom' for this stub; choose one of bull, bear, crash"):
        analyse(_stub(model, bars), num=50, horizon=6, regime="boom")
    with pytest.raises(ModelError, match="stub has no sampling temperature"):
        analyse(_stub(model, bars), num=50, horizon=6, temperature=2.0)
    with pytest.raises(ModelError, match="stub has no sampling temperature"):
        analyse(_stub(model, bars), num=50, horizon=6, stress_temperatures=(1.0, 2.0))
    model.regimes = ["bull", "bear"]  # a model that knows no crash gets no crash row, and says why
    model.label_counts = [1, 1]
    calm = analyse(_stub(model, bars), num=50, horizon=6)
    assert [r.regime for r in calm.stress] == [None]
    assert any(note.startswith("no crash stress row: unknown regime 'crash'") for note in calm.notes)
    with pytest.raises(ModelError, match="garch is not conditional"):
        analyse(garch, num=50, horizon=6, regime="crash")


def test_a_stress_row_with_less_risk_than_the_baseline_is_flagged(bars):
    model = _Regimes({"seq_len": 8})
    model.crash_drift = 0.5  # a "crash" that rises: the table must not pass it off as a stress
    analysis = analyse(_stub(model, bars), num=200, horizon=6)
    crash = analysis.stress[-1]
    assert crash.flag == LESS_RISK == "⚠ less risk than the baseline under this stress"
    assert crash.tail(0.95).var < analysis.base.tail(0.95).var and not analysis.base.flag
    assert any("crash: less risk than the baseline under a stress" in note for note in analysis.notes)
    assert analysis.to_dict()["stress"][-1]["flag"] == LESS_RISK


# ---- CLI ------------------------------------------------------------------------------------------------------
def test_cli_prints_tables_and_writes_json_and_html(garch_dir, small_csv, tmp_path, capsys):
    code, out, err = run(capsys, "scenarios", "--model", garch_dir, "--num", 400, "--horizon", 12, "--seed", 3,
                         "--json", tmp_path / "risk.json", "--report", tmp_path / "risk.html")
    assert code == 0, err
    for text in ("VaR 95%", "CVaR 95%", "VaR 99%", "CVaR 99%", "parametric normal", "real data (historical)",
                 "excess kurtosis", "percentile 99", "stress tests", "T=1 (base)", "T=1.5", "T=2", "changes",
                 "nothing (the baseline)", "temperature 2: the return shocks × 2", "flag",
                 "P(loss > threshold)", "happens in at most 5% of scenarios", f"training data {small_csv}"):
        assert text in out, text
    data = json.loads((tmp_path / "risk.json").read_text())
    base = data["scenarios"]
    assert data["settings"]["horizon"] == 12 and data["model"]["name"] == "garch"
    assert 0 < base["var_95"] <= base["cvar_95"] <= base["cvar_99"] and base["var_95"] <= base["var_99"]
    assert f"{base['var_95']:.4f}" in out and "positive loss fractions" in data["sign_convention"]
    assert data["real"]["var_99"] > 0 and [row["temperature"] for row in data["stress"]] == [1.0, 1.5, 2.0]
    assert set(base["distribution"]["percentiles"]) == {"p1", "p5", "p25", "p50", "p75", "p95", "p99"}
    assert set(data["scenarios_stderr"]) == {"var_95", "cvar_95", "var_99", "cvar_99"}
    assert 0 < data["scenarios_stderr"]["var_95"] < base["var_95"]
    assert f"{base['var_95']:.4f} ± {data['scenarios_stderr']['var_95']:.4f}" in out
    assert len(data["fan_chart"]["values"]) == 7 and len(data["fan_chart"]["values"][0]) == 13
    page = (tmp_path / "risk.html").read_text()
    assert "Risk scenarios" in page and "CVaR 99%" in page and page.count("data:image/png;base64,") == 2
    assert sorted(p.name for p in (tmp_path / "risk_files").iterdir()) == ["loss_histogram.png",
                                                                          "scenario_fan_chart.png"]
    # the same seed prints the same numbers
    again = tmp_path / "again.json"
    assert run(capsys, "scenarios", "--model", garch_dir, "--num", 400, "--horizon", 12, "--seed", 3,
               "--json", again)[0] == 0
    assert json.loads(again.read_text())["scenarios"] == base


@pytest.mark.parametrize(("args", "message"), [
    (["--regime", "crash"], "garch is not conditional, so --regime crash does not apply"),
    (["--temperature", "0"], "--temperature must be positive"),
    (["--temperature", "-1"], "--temperature must be positive"),
    (["--num", "5"], "--num must be at least 10"),
    (["--horizon", "0"], "--horizon must be at least 1"),
    (["--stress-temperatures", "1,abc"], "--stress-temperatures '1,abc' is not a list of numbers"),
    (["--stress-temperatures", "1,0"], "--stress-temperatures must be positive"),
    (["--position", "0"], "--position must be a non-zero"),
    (["--threshold", "-0.1"], "--threshold is a loss fraction"),
    (["--report", "risk.txt"], "--report risk.txt: give a .html file"),
    (["--real", "missing.csv"], "missing.csv not found"),
])
def test_cli_bad_input_is_a_one_line_error(garch_dir, capsys, args, message):
    code, _, err = run(capsys, "scenarios", "--model", garch_dir, "--num", 20, *args)
    assert_one_line_error(code, err, message)


def test_cli_real_data_sources_and_models_without_returns(garch_dir, small_csv, tmp_path, capsys):
    moved = tmp_path / "garch"
    shutil.copytree(garch_dir, moved)
    meta = json.loads((moved / "meta.json").read_text())
    assert meta["kind"] == "file" and meta["path"] == str(small_csv)  # the data source, re-readable
    (moved / "meta.json").write_text(json.dumps({**meta, "path": str(tmp_path / "gone.csv")}))
    code, out, err = run(capsys, "scenarios", "--model", moved, "--num", 50, "--horizon", 6)
    assert code == 0, err
    assert "real data: n/a: the training data could not be re-read" in out
    assert "pass --real FILE" in out
    code, out, err = run(capsys, "scenarios", "--model", moved, "--num", 50, "--horizon", 6, "--real", small_csv)
    assert code == 0, err
    assert f"real data: {small_csv}, 1500 bars: 1494 overlapping 6-bar windows" in out
    code, out, err = run(capsys, "scenarios", "--model", moved, "--num", 50, "--horizon", 6000, "--real", small_csv)
    assert code == 0, err and "n/a" in out
    (moved / "representation.json").write_text("null")
    code, _, err = run(capsys, "scenarios", "--model", moved, "--num", 50)
    assert_one_line_error(code, err, "cannot simulate price scenarios")


# ---- issue 13: a stress test must not report less risk under more stress ----------------------------------------
@pytest.fixture(scope="module")
def cgan_dir(small_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "cgan"
    api.train("cgan", csv=small_csv, config={**TINY_CGAN, "q_crash": 0.2}, epochs=1, out=out)
    return out


def test_cgan_refuses_a_temperature_and_points_to_the_crash_regime(cgan_dir, tmp_path, capsys):
    """Measured on a year of ETHUSDT 1h, a cgan's VaR 95% fell from 0.190 at T=1 to 0.119 at T=2: scaling a GAN's
    noise is no stress. Its scenarios and generate refuse --temperature and point to --regime crash."""
    code, _, err = run(capsys, "scenarios", "--model", cgan_dir, "--num", 50, "--temperature", 2)
    assert_one_line_error(code, err, "cgan has no sampling temperature; use --regime crash for a stress scenario")
    code, _, err = run(capsys, "scenarios", "--model", cgan_dir, "--num", 50, "--stress-temperatures", "1,2")
    assert_one_line_error(code, err, "cgan has no sampling temperature; use --regime crash")
    code, _, err = run(capsys, "generate", "--model", cgan_dir, "--num-samples", 3, "--temperature", 2,
                       "--output", tmp_path / "x.csv")
    assert_one_line_error(code, err, "cgan has no sampling temperature; use --regime crash for a stress scenario")
    assert not (tmp_path / "x.csv").exists()


def test_cgan_stress_table_has_the_crash_row_and_says_what_it_changes(cgan_dir, capsys):
    code, out, err = run(capsys, "scenarios", "--model", cgan_dir, "--num", 200, "--horizon", 8)
    assert code == 0, err
    assert "as trained (base)" in out and "regime crash: the crash label" in out and "T=2" not in out
    assert "no sampling temperature" in out  # the title says so instead of T=1
