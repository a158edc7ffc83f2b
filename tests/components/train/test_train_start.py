"""The train step's anchors fitted to the data and its warm starts (an earlier artifact's weights,
a backbone file with frozen epochs), end to end on the tiny dataset; and their bad settings."""
from __future__ import annotations

import json

import numpy as np
import pytest

from components.train import core

QUICK = dict(epochs=1, batch_size=8, input_size=(96, 96), learning_rate=2e-3, seed=1, progress=False,
             evaluate=False, saved_model=False)


@pytest.fixture(scope="module")
def fitted_model(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("fitted") / "model"
    core.train(str(tiny_dataset), out, anchors="fit", **QUICK)
    return out


@pytest.mark.slow
def test_fitted_anchors_are_what_the_model_is_built_with(fitted_model):
    history = json.loads((fitted_model / "history.json").read_text())
    record = history["anchors"]
    assert record["method"] == "kmeans_iou" and record["boxes"] > 0
    assert 0.0 <= record["unmatched_share"] <= record["unmatched_share_default"] <= 1.0
    config = json.loads((fitted_model / "model_config.json").read_text())
    assert config["strides"] == record["strides"]
    assert config["anchor_scales"] == record["anchor_scales"]
    assert config["aspect_ratios"] == record["aspect_ratios"]
    assert history["hyperparameters"]["anchors"] == "fit"


@pytest.mark.slow
def test_init_from_an_earlier_model_loads_everything(fitted_model, tiny_dataset, tmp_path):
    from edgeship.detection.model import load_model

    earlier, _, _ = load_model(fitted_model)
    out = tmp_path / "next"
    core.train(str(tiny_dataset), out, anchors="fit", init_from=str(fitted_model),
               **{**QUICK, "learning_rate": 1e-9})  # ~no update: the result is the earlier model
    start = json.loads((out / "history.json").read_text())["warm_start"]
    assert start["scope"] == "all" and start["layers_loaded"] > 50 and start["reason"] is None
    later, _, _ = load_model(out)
    # every trainable weight came from the earlier model (BatchNorm's moving statistics move on)
    assert len(earlier.trainable_weights) == len(later.trainable_weights) > 100
    for a, b in zip(earlier.trainable_weights, later.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.name)


@pytest.mark.slow
def test_backbone_from_a_model_artifact_then_frozen_epochs(fitted_model, tiny_dataset, tmp_path):
    out = tmp_path / "warm"
    core.train(str(tiny_dataset), out, anchors="default", backbone_weights=str(fitted_model),
               frozen_epochs=1, **QUICK)
    history = json.loads((out / "history.json").read_text())
    start = history["warm_start"]
    assert start["kind"] == "artifact" and start["layers_loaded"] > 50 and start["frozen_epochs"] == 1
    assert len(start["frozen"]["loss"]) == 1 and np.isfinite(start["frozen"]["loss"]).all()
    assert list((out / "frozen" / "checkpoints").glob("ckpt-*.index")), "the frozen phase checkpoints apart"
    assert len(history["loss"]) == 1  # then the full fine-tune, `epochs` long


@pytest.mark.slow
def test_fpn_head_is_built_and_trains(tiny_dataset, tmp_path):
    from edgeship.detection.model import load_model

    out = tmp_path / "fpn"
    core.train(str(tiny_dataset), out, head="fpn", **QUICK)
    config = json.loads((out / "model_config.json").read_text())
    assert config["fpn_channels"] == core.HEADS["fpn"] > 0
    model, cfg, anchors = load_model(out)
    assert any(layer.name.startswith("fpn") for layer in model.layers)
    box, cls = model(np.zeros((1, 96, 96, 3), np.float32), training=False)
    assert box.shape == (1, len(anchors), 4) and cls.shape == (1, len(anchors), cfg.num_classes + 1)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_model(tiny_dataset, tmp_path):
    from tensorflow.python.framework import config as tf_config

    from edgeship.detection.model import load_model

    runs = [core.train(str(tiny_dataset), tmp_path / f"m{i}", **{**QUICK, "epochs": 2})
            for i in range(2)]
    assert runs[0].history["loss"] == runs[1].history["loss"]  # bit for bit
    a, b = (load_model(tmp_path / f"m{i}")[0] for i in range(2))
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    assert not tf_config.is_op_determinism_enabled()  # the process is left as it was


@pytest.mark.parametrize("kwargs, match", [
    ({"head": "yolo"}, "head='yolo'"),
    ({"anchors": "kmeans"}, "anchors='kmeans'"),
    ({"frozen_epochs": 2}, "frozen_epochs=2 needs pretrained weights"),
    ({"frozen_epochs": -1, "backbone_weights": "none"}, "frozen_epochs must be >= 0"),
    ({"init_from": "/nowhere/model", "backbone_weights": "imagenet"}, "give one"),
])
def test_bad_start_settings_name_the_value(tiny_dataset, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        core.train(str(tiny_dataset), tmp_path / "m", **{**QUICK, **kwargs})
