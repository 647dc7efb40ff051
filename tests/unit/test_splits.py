import numpy as np
import pytest

from marketsynth import splits
from marketsynth.errors import ConfigError, DataError


def test_chronological_boundary_and_gap():
    fold = splits.chronological(100, 0.8, purge=3, embargo=2)
    assert (fold.train, fold.test) == (slice(0, 75), slice(80, 100))
    assert fold.gap == 5


def test_chronological_refuses_too_few_and_bad_fraction():
    with pytest.raises(DataError):
        splits.chronological(4, 0.8, purge=3)
    with pytest.raises(ConfigError):
        splits.chronological(100, 1.0)


@pytest.mark.parametrize(("fraction", "held_blocks"), [(0.2, [4, 9]), (0.5, [1, 3, 5, 7, 9])])
def test_interleaved_holds_out_evenly_spread_blocks(fraction, held_blocks):
    held = splits.interleaved(100, 10, fraction)
    assert sorted(set(np.flatnonzero(held) // 10)) == held_blocks


def test_interleaved_with_few_blocks_holds_out_the_last():
    held = splits.interleaved(25, 10, 0.2)
    assert np.flatnonzero(held).tolist() == list(range(20, 25))


def test_near_covers_neighbours_on_both_sides():
    mask = np.zeros(10, dtype=bool)
    mask[5] = True
    assert np.flatnonzero(splits.near(mask, 2)).tolist() == [3, 4, 5, 6, 7]
    assert np.flatnonzero(splits.near(mask, 1, 0)).tolist() == [4, 5]


def test_walk_forward_expanding_never_trains_on_or_near_its_test_period():
    folds = splits.walk_forward(1000, 4, purge=5, embargo=3)
    assert [f.test for f in folds] == [slice(200, 400), slice(400, 600), slice(600, 800), slice(800, 1000)]
    for fold in folds:
        assert fold.train.start == 0
        assert fold.train.stop == fold.test.start - 8
    tests = [set(range(f.test.start, f.test.stop)) for f in folds]
    assert all(not (a & b) for i, a in enumerate(tests) for b in tests[i + 1:])


def test_walk_forward_rolling_keeps_a_fixed_training_length():
    folds = splits.walk_forward(1000, 3, test_size=100, train_size=300, purge=2)
    assert all(f.train_size == 300 for f in folds)
    assert [f.train.stop for f in folds] == [698, 798, 898]


def test_walk_forward_too_short_is_a_clear_error():
    with pytest.raises(DataError, match="fewer folds"):
        splits.walk_forward(100, 4, test_size=25, purge=1)
    with pytest.raises(ConfigError):
        splits.walk_forward(100, 0)
