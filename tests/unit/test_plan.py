"""How long and in what batches training runs (keel.training.plan): small and large data both
get enough optimizer steps, and pinned settings win."""

from __future__ import annotations

import pytest

from keel.config.schema import TrainConfig
from keel.training.plan import MAX_BATCH, MIN_BATCH, auto_batch_size, plan


@pytest.mark.parametrize(
    ("rows", "batch"),
    [(1, MIN_BATCH), (240, MIN_BATCH), (1_600, 32), (14_000, 256), (350_000, MAX_BATCH)],
)
def test_the_auto_batch_is_a_power_of_two_that_grows_with_the_rows(rows, batch):
    assert auto_batch_size(rows) == batch


def test_a_few_hundred_rows_get_many_epochs_of_small_batches():
    p = plan(TrainConfig(), rows=240)
    assert (p.batch_size, p.steps_per_epoch) == (16, 15)
    assert p.epochs == 200  # 3000 steps / 15 per epoch
    assert p.epochs * p.steps_per_epoch >= TrainConfig().steps


def test_large_data_trains_at_least_min_epochs_and_at_most_max_epochs():
    big = plan(TrainConfig(), rows=5_000_000)
    assert big.batch_size == MAX_BATCH and big.epochs == TrainConfig().min_epochs
    tiny = plan(TrainConfig(max_epochs=50), rows=10)
    assert tiny.epochs == 50


def test_pinned_epochs_and_batch_size_win_over_the_plan():
    p = plan(TrainConfig(epochs=3, batch_size=100), rows=1_000)
    assert (p.epochs, p.batch_size, p.steps_per_epoch) == (3, 100, 10)
    assert not p.auto_batch and not p.auto_epochs


def test_rows_are_split_over_the_workers():
    p = plan(TrainConfig(num_workers=4), rows=4_000)
    assert p.rows == 1_000
    assert p.batch_size == auto_batch_size(1_000)
