"""Training under a time budget (``pipeline.train_model``): the plan is an estimate, so epochs that finish early
leave no budget unused, and an explicit ``epochs`` stays a cap. The clock and the training are injected."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from marketsynth import api, pipeline


class FakeRun:
    """Stands in for ``api.train``: every epoch takes ``epoch_seconds`` on a fake clock."""

    def __init__(self, epoch_seconds: float):
        self.now, self.done, self.calls, self.epoch_seconds = 0.0, 0, [], epoch_seconds

    def perf_counter(self) -> float:
        return self.now

    def train(self, name, bars, *, epochs, resume, on_epoch, **_):
        self.calls.append((epochs, resume))
        for epoch in range(self.done + 1, epochs + 1):
            self.now += self.epoch_seconds
            self.done = epoch  # the checkpoint is written before the hook runs
            on_epoch(epoch, {"epoch": epoch, "g_loss": 1.0})

    def checkpoint(self, path, device="cpu"):
        return SimpleNamespace(epoch=self.done)


@pytest.fixture
def fake(monkeypatch):
    def make(epoch_seconds: float, planned: int) -> FakeRun:
        run = FakeRun(epoch_seconds)
        monkeypatch.setattr(pipeline, "time", run)
        monkeypatch.setattr(api, "train", run.train)
        monkeypatch.setattr(pipeline, "load_checkpoint", run.checkpoint)
        monkeypatch.setattr(pipeline, "_epochs_for_budget", lambda *args, **kwargs: planned)
        return run
    return make


def train(tmp_path, **kwargs):
    return pipeline.train_model("dcgan", pd.DataFrame(), out=tmp_path / "checkpoint", **kwargs)


def test_epochs_that_end_early_continue_to_the_budget(fake, tmp_path):
    run = fake(epoch_seconds=10, planned=2)  # the probe overestimated: 2 epochs planned for a 100 s budget
    trained = train(tmp_path, budget_seconds=100)
    assert run.calls == [(2, False), (8, True)]  # 85 s of the budget planned (_BUDGET_SAFETY), 20 s spent
    assert trained.epochs == 8 and not trained.stopped_by_budget


def test_an_explicit_epoch_count_caps_the_continuation(fake, tmp_path):
    run = fake(epoch_seconds=10, planned=2)
    assert train(tmp_path, budget_seconds=100, epochs=3).epochs == 3
    assert run.calls == [(2, False), (3, True)]


def test_a_plan_that_overruns_stops_at_the_budget_and_is_not_extended(fake, tmp_path):
    run = fake(epoch_seconds=40, planned=5)
    trained = train(tmp_path, budget_seconds=100)
    assert run.calls == [(5, False)] and trained.epochs == 3 and trained.stopped_by_budget


def test_without_a_budget_the_epochs_are_exactly_the_ones_asked_for(fake, tmp_path):
    run = fake(epoch_seconds=10, planned=99)
    assert train(tmp_path, epochs=4).epochs == 4 and run.calls == [(4, False)]
