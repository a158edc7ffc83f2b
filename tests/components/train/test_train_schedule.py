"""The float training's length on small data (edgeship.detection.training.epoch_schedule, shared
with qat): the pipeline raises the epochs of a small train split to a minimum of optimizer steps,
patience alike, and leaves a large one as asked; `edgeship train` keeps --epochs exact."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from components.train import core
from components.train.settings import PIPELINE_TRAIN, TRAIN
from edgeship.detection.training import epoch_schedule


def test_the_raccoon_split_gets_the_pipelines_minimum_and_the_embedded_data_does_not():
    raccoon = epoch_schedule(151, 16, epochs=PIPELINE_TRAIN.epochs, min_steps=PIPELINE_TRAIN.min_steps,
                             patience=PIPELINE_TRAIN.patience, max_raised_epochs=core.MAX_RAISED_EPOCHS)
    assert raccoon["steps_per_epoch"] == 9 and raccoon["total_steps"] >= PIPELINE_TRAIN.min_steps
    assert raccoon["epochs"] == -(-PIPELINE_TRAIN.min_steps // 9)
    assert raccoon["patience"] == -(-PIPELINE_TRAIN.patience * raccoon["epochs"] // PIPELINE_TRAIN.epochs)
    embedded = epoch_schedule(2700, 16, epochs=PIPELINE_TRAIN.epochs, min_steps=PIPELINE_TRAIN.min_steps,
                              patience=PIPELINE_TRAIN.patience, max_raised_epochs=core.MAX_RAISED_EPOCHS)
    assert (embedded["epochs"], embedded["patience"]) == (PIPELINE_TRAIN.epochs, PIPELINE_TRAIN.patience)
    assert TRAIN.min_steps == 0  # `edgeship train --epochs N` trains N epochs


@settings(max_examples=300, deadline=None)
@given(images=st.integers(0, 100_000), batch=st.integers(1, 256), epochs=st.integers(1, 500),
       min_steps=st.integers(0, 20_000), patience=st.integers(1, 50), cap=st.integers(1, 1000))
def test_the_schedule_reaches_min_steps_or_is_left_as_asked(images, batch, epochs, min_steps, patience, cap):
    s = epoch_schedule(images, batch, epochs=epochs, min_steps=min_steps, patience=patience, max_raised_epochs=cap)
    one_pass = max(1, images // batch)
    assert s["total_steps"] == s["epochs"] * s["steps_per_epoch"]
    if epochs * one_pass >= min_steps:  # enough already: exactly as asked
        assert (s["epochs"], s["steps_per_epoch"], s["patience"]) == (epochs, one_pass, patience)
    else:
        assert s["total_steps"] >= min_steps and s["epochs"] <= max(epochs, cap)
        assert s["total_steps"] < min_steps + s["epochs"] + s["steps_per_epoch"]  # not much more
        assert s["steps_per_epoch"] >= one_pass and s["epochs"] >= epochs
        assert s["patience"] >= patience and "raised to" in s["reason"]
