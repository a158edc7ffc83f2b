"""Which epoch the float training keeps and when it stops (edgeship.detection.early_stop, the
train step's `early_stop`): on the val loss, on the Keras model's val mAP measured after every
epoch, or on none (the last epoch)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeship.detection.early_stop import METRICS, EarlyStop


class _Weights:
    """Stands in for a Keras model: its weights are the number of the epoch that set them."""

    def __init__(self) -> None:
        self.epoch = 0

    def get_weights(self) -> list:
        return [self.epoch]


def _run(stop: EarlyStop, losses: list[float]) -> tuple[int, bool]:
    """Feed the epochs' val losses until the stop says so; return the epochs run and whether it
    stopped early."""
    model = _Weights()
    for epoch, loss in enumerate(losses, start=1):
        model.epoch = epoch
        if stop.epoch_end(model, epoch, loss):
            return epoch, True
    return len(losses), False


@settings(max_examples=300, deadline=None)
@given(losses=st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=1, max_size=60),
       patience=st.integers(1, 10))
def test_val_loss_keeps_the_lowest_epoch_and_stops_after_patience_without_one(losses, patience):
    stop = EarlyStop("val_loss", patience)
    ran, stopped = _run(stop, losses)
    seen = losses[:ran]
    best = stop.best_epoch
    assert stop.best_weights == [best] and stop.best_val_loss == seen[best - 1]
    assert seen[best - 1] <= min(seen) + 1e-4  # the kept epoch is the lowest, to the tolerance
    assert all(x >= seen[best - 1] - 1e-4 for x in seen[best:])  # nothing after it beat it
    assert (ran - best >= patience) == stopped  # stopped exactly when patience ran out
    assert ran - best <= patience


@settings(max_examples=200, deadline=None)
@given(maps=st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=40), patience=st.integers(1, 8))
def test_val_map_keeps_the_highest_map_epoch_whatever_the_loss_does(maps, patience):
    calls = iter(maps)
    stop = EarlyStop("val_map", patience, val_map=lambda model: next(calls))
    rising_loss = [float(e) for e in range(1, len(maps) + 1)]  # the val loss only gets worse
    ran, stopped = _run(stop, rising_loss)
    seen = maps[:ran]
    assert stop.val_maps == seen and seen[stop.best_epoch - 1] >= max(seen) - 1e-4
    assert stop.best_val_loss == rising_loss[stop.best_epoch - 1]
    assert (ran - stop.best_epoch >= patience) == stopped
    record = stop.record()
    assert record["early_stop"] == "val_map" and record["val_maps"] == seen


def test_none_runs_every_epoch_and_keeps_the_last():
    stop = EarlyStop("none", patience=1)
    ran, stopped = _run(stop, [1.0, 5.0, 9.0, 9.5])  # a val loss that only gets worse
    assert ran == 4 and not stopped and stop.best_epoch == 4 and stop.best_weights == [4]


@pytest.mark.parametrize("metric", ["val_mAP", "", "loss"])
def test_an_unknown_metric_is_refused_with_its_name(metric):
    with pytest.raises(ValueError, match=f"got {metric!r}"):
        EarlyStop(metric)


def test_val_map_needs_the_function_that_measures_it():
    with pytest.raises(ValueError, match="val mAP function"):
        EarlyStop("val_map", 3)


def test_train_on_val_map_records_the_map_of_every_epoch_and_keeps_the_best(tiny_dataset, tmp_path):
    from components.train.core import train

    r = train(str(tiny_dataset), tmp_path / "model", epochs=3, batch_size=8, alpha=0.35,
              input_size=(96, 96), early_stop="val_map", patience=5, saved_model=False, progress=False)
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    maps = history["val_maps"]
    assert len(maps) == len(history["epoch"]) == 3 and history["early_stop"] == "val_map"
    assert history["hyperparameters"]["early_stop"] == "val_map"
    assert r.best_epoch == int(np.argmax(np.asarray(maps) > max(maps) - 1e-4)) + 1
    # the kept weights are the best epoch's: the final evaluation measures them again
    assert r.val_map == pytest.approx(maps[r.best_epoch - 1], abs=1e-6)


def test_train_refuses_an_unknown_early_stop_before_reading_data(tmp_path):
    from components.train.core import train

    with pytest.raises(ValueError, match="early_stop: must be one of val_loss, val_map, none, got 'accuracy'"):
        train(str(tmp_path / "no-data"), tmp_path / "model", early_stop="accuracy")


def test_edgeship_train_takes_each_choice_and_refuses_others(capsys):
    from edgeship import cli

    parser = cli.build_parser()
    for metric in METRICS:
        args = parser.parse_args(["train", "--data", "d", "--out", "o", "--early-stop", metric])
        assert args.early_stop == metric
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "d", "--out", "o", "--early-stop", "val_acc"])
    assert "'val_acc'" in capsys.readouterr().err
