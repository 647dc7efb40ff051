"""TimeGAN on a tiny problem: phases, finite losses, overfitting autoencoder, reproducible sampling."""

import numpy as np
import pytest
import torch

from marketsynth.checkpoint import load_checkpoint
from marketsynth.errors import ConfigError, ModelError
from marketsynth.models.timegan import TimeGAN
from marketsynth.training import train_loop

TINY = {"seq_len": 8, "hidden_dim": 8, "num_layers": 2, "batch_size": 32}


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    """64 windows of a noisy sine with per-window phase, 5 features (like scaled candle features)."""
    rng = np.random.default_rng(0)
    t = np.arange(8)[None, :, None] + rng.uniform(0, 6, (64, 1, 1))
    base = np.sin(t * np.linspace(0.5, 1.5, 5)[None, None, :])
    return (base + 0.1 * rng.standard_normal((64, 8, 5))).astype(np.float32)


def test_phases_follow_the_epoch_fractions():
    model = TimeGAN(TINY)
    assert model.phase_epochs(8) == (2, 2, 4)  # a quarter, a quarter, the rest joint
    assert model.phase_epochs(3) == (1, 1, 1)
    assert model.phase_epochs(2) == (0, 0, 2)  # too few epochs for pre-training: joint only
    assert [model.phase_of(e, 8) for e in (0, 1, 2, 3, 4, 7)] == ["embedding"] * 2 + ["supervised"] * 2 + [
        "joint"
    ] * 2
    explicit = TimeGAN({**TINY, "embedding_epochs": 5, "supervised_epochs": 1})
    assert explicit.phase_epochs(10) == (5, 1, 4)
    with pytest.raises(ConfigError, match="recovery_output"):
        TimeGAN({**TINY, "recovery_output": "relu"})


def test_each_phase_gives_finite_losses_through_the_shared_loop(windows):
    model = TimeGAN(TINY, seed=1)
    history = train_loop(model, windows, epochs=3, seed=1, progress=False)
    embedding, supervised, joint = history.rows
    assert embedding["phase"] == 0 and "e_loss" in embedding
    assert supervised["phase"] == 1 and "s_loss" in supervised
    assert joint["phase"] == 2 and model.current_phase == "joint"
    for key in ("g_loss", "g_adv", "g_sup", "g_moment", "e_loss", "d_loss"):
        assert np.isfinite(joint[key]), key
    assert joint["g_loss"] == pytest.approx(joint["g_adv"] + joint["g_sup"] + joint["g_moment"], rel=1e-4)
    assert all(np.isfinite(v) for row in history.rows for v in row.values() if isinstance(v, float))


def test_embedding_phase_overfits_a_small_batch(windows):
    model = TimeGAN({**TINY, "embed_lr": 1e-2}, seed=2)  # a higher rate than the default makes it quick
    batch = torch.from_numpy(windows[:32])
    losses = [model.train_step(batch, None, epoch=0, total_epochs=4)["e_loss"] for _ in range(80)]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_training_is_deterministic_given_the_seed(windows):
    def run() -> tuple[list, np.ndarray]:
        torch.manual_seed(5)
        model = TimeGAN(TINY, seed=3)
        batch = torch.from_numpy(windows[:32])
        losses = [model.train_step(batch, None, epoch=e, total_epochs=3) for e in (0, 1, 2)]
        return losses, model.sample(4, seed=0)

    first, second = run(), run()
    assert first[0] == second[0]
    assert np.array_equal(first[1], second[1])


def test_sampling_is_reproducible_at_any_length():
    model = TimeGAN(TINY, seed=4)
    default = model.sample(6, seed=7)
    assert default.shape == (6, 8, 5) and default.dtype == np.float32 and np.isfinite(default).all()
    assert np.array_equal(default, model.sample(6, seed=7))
    assert not np.array_equal(default, model.sample(6, seed=8))
    for length in (1, 5, 8, 37):
        path = model.sample(6, seed=7, length=length)
        assert path.shape == (6, length, 5) and np.isfinite(path).all()
        shared = min(length, 8)  # a longer path with the same seed starts like the default-length one
        np.testing.assert_allclose(path[:, :shared], default[:, :shared], atol=1e-5)
    with pytest.raises(ModelError, match="timegan has no sampling temperature"):
        model.sample(6, seed=7, temperature=2.0)  # scaling a GAN's noise is no stress (issue 13)


def test_latent_codes_reproduce_sample_and_interpolate():
    model = TimeGAN(TINY, seed=4)
    z = model.sample_latent(3, seed=7)
    assert z.shape == (3, 8, 5)
    np.testing.assert_allclose(model.generate_from_latent(z), model.sample(3, seed=7), atol=1e-6)
    middle = model.generate_from_latent(0.5 * z[:1] + 0.5 * z[1:2])
    assert middle.shape == (1, 8, 5) and np.isfinite(middle).all()


def test_weights_round_trip_gives_the_same_samples(windows):
    model = TimeGAN(TINY, seed=5)
    model.train_step(torch.from_numpy(windows[:32]), None, epoch=0, total_epochs=1)
    clone = TimeGAN(TINY, seed=99)
    clone.load_state_tensors(model.state_tensors())
    assert np.array_equal(clone.sample(4, seed=1, length=20), model.sample(4, seed=1, length=20))
    assert set(model.optimizers()) == {"embedding", "supervised", "generator", "embedder", "discriminator"}


class _Interrupt(Exception):
    pass


def _stop_after(epochs: int):
    def on_epoch(epoch: int, row: dict) -> None:
        if epoch == epochs:
            raise _Interrupt

    return on_epoch


def test_an_interrupted_run_resumes_exactly(windows, tmp_path):
    """The realistic case: the same command (same total epochs, so the same phases) re-run with resume."""
    straight = TimeGAN(TINY, seed=6)
    train_loop(straight, windows, epochs=3, seed=6, progress=False)
    with pytest.raises(_Interrupt):
        train_loop(
            TimeGAN(TINY, seed=6),
            windows,
            epochs=3,
            seed=6,
            progress=False,
            out_dir=tmp_path / "run",
            checkpoint_every=1,
            on_epoch=_stop_after(2),
        )
    resumed = TimeGAN(TINY, seed=6)
    history = train_loop(
        resumed, windows, epochs=3, seed=6, progress=False, out_dir=tmp_path / "run", resume=True
    )
    assert [row["phase"] for row in history.rows] == [0, 1, 2]
    for key, value in straight.state_tensors().items():
        torch.testing.assert_close(resumed.state_tensors()[key], value, rtol=0, atol=0)
    loaded = load_checkpoint(tmp_path / "run").model
    assert loaded.current_phase == "joint"
    assert np.array_equal(loaded.sample(3, seed=2, length=12), straight.sample(3, seed=2, length=12))


def test_extending_a_run_keeps_explicit_phases_and_never_goes_back(windows, tmp_path):
    config = {**TINY, "embedding_epochs": 1, "supervised_epochs": 1}  # phases independent of the total
    straight = TimeGAN(config, seed=6)
    train_loop(straight, windows, epochs=3, seed=6, progress=False)
    train_loop(TimeGAN(config, seed=6), windows, epochs=2, seed=6, progress=False, out_dir=tmp_path / "run")
    extended = TimeGAN(config, seed=6)
    history = train_loop(
        extended, windows, epochs=3, seed=6, progress=False, out_dir=tmp_path / "run", resume=True
    )
    assert [row["phase"] for row in history.rows] == [0, 1, 2]
    for key, value in straight.state_tensors().items():
        torch.testing.assert_close(extended.state_tensors()[key], value, rtol=0, atol=0)
    fractions = TimeGAN(
        TINY, seed=6
    )  # with fractions, a longer total would put epoch 3 back into pre-training
    fractions.load_extra_state(extended.extra_state())
    batch = torch.from_numpy(windows[:32])
    assert fractions.train_step(batch, None, epoch=3, total_epochs=30)["phase"] == 2


def test_conditions_are_refused():
    with pytest.raises(ModelError, match="unconditional"):
        TimeGAN(TINY).sample(2, conditions=np.zeros((2, 3)))
