"""GlowModel on real BTCUSDT 1h bar features: beats the Gaussian baseline on held-out bars, samples in feature
units, survives a checkpoint round trip, and drives ``marketsynth loglik``."""

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from typer.testing import CliRunner

from marketsynth import api
from marketsynth.checkpoint import load_checkpoint, save_checkpoint
from marketsynth.cli import loglik_cmd
from marketsynth.data.io import read_bars_file
from marketsynth.errors import ModelError
from marketsynth.features import FEATURE_NAMES, WARMUP_BARS, bar_features
from marketsynth.models.data import TrainingData
from marketsynth.models.flows import ActNorm
from marketsynth.models.glow import GaussianBaseline, GlowModel
from marketsynth.training import train_loop

SMALL = {"levels": 3, "steps_per_level": 2, "hidden": 32, "batch_size": 256, "gen_lr": 2e-3}


@pytest.fixture(scope="module")
def bars(btc_csv) -> pd.DataFrame:
    return read_bars_file(btc_csv).iloc[-3020:].reset_index(drop=True)  # 3000 feature rows


@pytest.fixture(scope="module")
def trained(bars, tmp_path_factory):
    """A small glow trained 6 epochs through ``api.train`` (the CLI's path); (model, train, held-out, dir,
    history)."""
    out = tmp_path_factory.mktemp("glow") / "run"
    result = api.train("glow", bars, config=SMALL, epochs=6, out=out, progress=False, seed=0)
    arrays = result.model.training_arrays(TrainingData(bars))  # the same split (default 0.2), preprocessing kept
    return result.model, arrays.train, arrays.val, out, result.history


def test_training_data_splits_in_time_and_purges_the_overlap(bars):
    model = GlowModel(SMALL)
    assert GlowModel.representation_for("log-returns") is None  # it reads the bars, not a candle encoding
    arrays = model.training_arrays(TrainingData(bars, val_fraction=0.2))
    train, val, meta = arrays.train, arrays.val, arrays.meta
    assert arrays.describe() == f"{len(train)} feature rows"
    n = len(bars) - WARMUP_BARS
    assert train.shape[1:] == val.shape[1:] == (1, 16)
    assert len(val) == round(0.2 * n) and len(train) == n - len(val) - WARMUP_BARS
    features = bar_features(bars).to_numpy()
    np.testing.assert_array_equal(val[:, 0], features[-len(val):])
    np.testing.assert_allclose(model.standardiser.mean, train[:, 0].mean(axis=0))
    assert meta["val_rows"] == len(val) and meta["val_nll_gauss"] == model.report["val_nll_gauss"]


def test_flow_beats_the_gaussian_baseline_on_held_out_bars(trained):
    model, _, val, out, history = trained
    meta = load_checkpoint(out).meta
    assert meta["representation"] == "bar-features" and meta["val_rows"] == len(val)
    assert meta["val_nll_gauss"] == pytest.approx(model.report["val_nll_gauss"])
    last = history.rows[-1]
    assert {"nll", "bpd", "val_nll", "val_bpd", "val_nll_gauss"} <= set(last)
    assert np.isfinite(history.column("nll")).all()
    assert last["bpd"] == pytest.approx(last["nll"] / np.log(2))
    assert last["val_nll"] < last["val_nll_gauss"] - 0.1, last
    assert "beats" in model.heldout_summary()


def test_log_prob_is_the_flow_density_after_standardising_and_whitening(trained):
    model, _, val, _, _ = trained
    rows = val[:50, 0]
    w = model.baseline.whiten(model.standardiser.transform(rows))
    with torch.no_grad():
        flow = model.flow.log_prob(torch.as_tensor(w, dtype=torch.float32)).double().numpy()
    expected = flow + model.baseline.whiten_log_abs_det + model.standardiser.log_abs_det
    np.testing.assert_allclose(model.log_likelihood(rows), expected, rtol=1e-5)
    np.testing.assert_allclose(model.log_likelihood(val[:50]), model.log_likelihood(rows))  # [n, 1, F] works too
    np.testing.assert_allclose(model.nll_bits_per_dim(rows), -model.log_likelihood(rows) / (16 * np.log(2)))
    nll = -(model.log_likelihood(val[:, 0]) - model.standardiser.log_abs_det).mean() / 16
    assert model.validation_losses(torch.as_tensor(val))["val_nll"] == pytest.approx(nll)


def test_an_untrained_flow_is_exactly_the_gaussian_baseline(bars):
    model = GlowModel(SMALL, seed=1)
    val = model.training_arrays(TrainingData(bars, val_fraction=0.2)).val
    losses = model.validation_losses(torch.as_tensor(val))  # identity couplings after a rotation: log|det| = 0
    assert losses["val_nll"] == pytest.approx(losses["val_nll_gauss"], abs=1e-5)
    assert not any(bool(m.initialized) for m in model.flow.modules() if isinstance(m, ActNorm))  # eval: no init


def test_samples_are_feature_vectors_in_feature_units(trained):
    model, train, _, _, _ = trained
    samples = model.sample(2000, seed=3)
    assert samples.shape == (2000, 1, 16) and np.isfinite(samples).all()
    np.testing.assert_array_equal(samples, model.sample(2000, seed=3))
    assert not np.array_equal(samples, model.sample(2000, seed=4))
    rsi = samples[:, 0, FEATURE_NAMES.index("rsi")]
    assert 35 < np.median(rsi) < 65  # RSI in its own units, not standardised
    assert model.sample(3, seed=0, length=5).shape == (3, 5, 16)
    mode = model.sample(4, seed=1, temperature=0.0)
    np.testing.assert_array_equal(mode, model.sample(4, seed=2, temperature=0.0))
    np.testing.assert_array_equal(mode, np.broadcast_to(mode[:1], mode.shape))
    np.testing.assert_allclose(mode[0], model.generate_from_latent(torch.zeros(1, 16))[0], rtol=1e-5, atol=1e-7)
    with pytest.raises(ModelError, match="unconditional"):
        model.sample(2, conditions=np.zeros((2, 1)))


def test_checkpoint_round_trip_keeps_actnorm_standardiser_and_samples(trained, bars):
    model, _, val, out, _ = trained
    loaded = load_checkpoint(out).model
    assert isinstance(loaded, GlowModel)
    assert all(bool(m.initialized) for m in loaded.flow.modules() if isinstance(m, ActNorm))
    np.testing.assert_array_equal(loaded.sample(64, seed=5), model.sample(64, seed=5))
    np.testing.assert_allclose(loaded.log_likelihood(val[:100]), model.log_likelihood(val[:100]), rtol=1e-6)
    assert loaded.report["val_nll_gauss"] == pytest.approx(model.report["val_nll_gauss"])
    mean = loaded.standardiser.mean.copy()
    loaded.training_arrays(TrainingData(bars.iloc[:1500], val_fraction=0.2))  # a resumed model keeps its own
    np.testing.assert_array_equal(loaded.standardiser.mean, mean)


def test_the_shared_loop_on_bare_rows_after_fitting_the_preprocessing(bars):
    rows = bar_features(bars.iloc[:620]).to_numpy()[:, None, :].copy()
    model = GlowModel({**SMALL, "levels": 2, "steps_per_level": 1})
    model.fit_preprocessing(rows)
    history = train_loop(model, rows, epochs=1)
    assert np.isfinite(history.rows[-1]["nll"])
    np.testing.assert_allclose(model.standardiser.mean, rows[:, 0].mean(axis=0))
    assert model.baseline.fitted and "train_nll_gauss" in model.report


def test_config_checks_and_gaussian_baseline():
    with pytest.raises(ModelError, match="seq_len must be 1"):
        GlowModel({"seq_len": 24})
    with pytest.raises(ModelError, match="unknown setting"):
        GlowModel({"depth": 3})
    rows = np.random.default_rng(0).multivariate_normal([1.0, -2.0], [[2.0, 0.6], [0.6, 1.0]], size=2000)
    base = GaussianBaseline.from_dict(GaussianBaseline().fit(rows).to_dict())
    from scipy.stats import multivariate_normal

    np.testing.assert_allclose(base.log_prob(rows[:10]),
                               multivariate_normal(base.mean, base.cov).logpdf(rows[:10]), rtol=1e-10)


def _cli() -> typer.Typer:
    app = typer.Typer()
    loglik_cmd.register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer's subcommand syntax
    return app


def test_loglik_command_writes_every_bars_loglik(trained, bars, tmp_path):
    model, _, _, out, _ = trained
    csv = tmp_path / "bars.csv"
    bars.iloc[-200:].assign(time=lambda f: f["time"].astype("int64") // 1000).to_csv(csv, index=False)
    output = tmp_path / "ll.csv"
    result = CliRunner().invoke(_cli(), ["loglik", "--model", str(out), "--csv", str(csv), "--output",
                                         str(output)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(output)
    assert list(frame.columns) == ["time", "loglik_nats", "nll_bits_per_dim"]
    assert len(frame) == 200 - WARMUP_BARS
    features = bar_features(bars.iloc[-200:])
    np.testing.assert_allclose(frame["loglik_nats"], model.log_likelihood(features.to_numpy()), rtol=1e-5)
    np.testing.assert_allclose(frame["nll_bits_per_dim"], -frame["loglik_nats"] / (16 * np.log(2)))
    assert "least likely" in result.output


def test_loglik_refuses_a_model_without_exact_likelihood(tmp_path, btc_csv):
    from marketsynth.models.dcgan import DCGAN

    save_checkpoint(tmp_path / "gan", DCGAN())
    result = CliRunner().invoke(_cli(), ["loglik", "--model", str(tmp_path / "gan"), "--csv", str(btc_csv),
                                         "--output", str(tmp_path / "x.csv")])
    assert isinstance(result.exception, ModelError)
    assert str(result.exception) == (f"loglik needs a model with exact likelihood (glow); {tmp_path / 'gan'} "
                                     "holds a dcgan")
