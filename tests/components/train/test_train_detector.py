"""The detector's contract: shapes, anchors, box coding, NMS, config, loss, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeship.detection import loss, train_data, training
from edgeship.detection.model import (
    ModelConfig,
    build_detector,
    decode_and_nms,
    decode_boxes,
    encode_boxes,
    make_anchors,
)


def test_model_outputs_follow_the_contract(tiny_config):
    model = build_detector(tiny_config)
    anchors = make_anchors(tiny_config)
    assert model.input.name.startswith("image")
    assert model.output_names == ["box_encodings", "class_logits"]
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    box, cls = model(x)
    assert box.shape == (2, len(anchors), 4)
    assert cls.shape == (2, len(anchors), tiny_config.num_classes + 1)
    # the input is raw pixels: normalization is the model's first layer
    assert type(model.layers[1]).__name__ == "Rescaling"


def test_anchor_count_and_order_match_the_heads(tiny_config):
    anchors = make_anchors(tiny_config)
    shapes = tiny_config.feature_shapes()
    assert shapes == [(6, 6), (3, 3)]
    per_loc = tiny_config.anchors_per_location
    assert len(anchors) == sum(r * c * n for (r, c), n in zip(shapes, per_loc))
    assert anchors.dtype == np.float32 and anchors.shape[1] == 4
    # first level, first cell: center (0.5/6, 0.5/6); square anchor of the first scale first
    np.testing.assert_allclose(anchors[0], [0.5 / 6, 0.5 / 6, 0.12, 0.12], atol=1e-6)
    # aspect ratio 2 means w / h = 2
    assert anchors[1, 3] / anchors[1, 2] == pytest.approx(2.0, rel=1e-5)
    # the second level starts after the first level's anchors, on the 3x3 grid
    first = 6 * 6 * per_loc[0]
    np.testing.assert_allclose(anchors[first, :2], [0.5 / 3, 0.5 / 3], atol=1e-6)
    assert (anchors[:, :2] > 0).all() and (anchors[:, :2] < 1).all()


def test_encode_decode_round_trip(tiny_config):
    anchors = make_anchors(tiny_config)
    rng = np.random.default_rng(1)
    y0, x0 = rng.uniform(0, 0.6, (2, len(anchors)))
    h, w = rng.uniform(0.05, 0.4, (2, len(anchors)))
    boxes = np.stack([y0, x0, y0 + h, x0 + w], -1).astype(np.float32)
    enc = encode_boxes(boxes, anchors)
    np.testing.assert_allclose(decode_boxes(enc, anchors).numpy(), boxes, atol=1e-5)
    # a box equal to its anchor encodes to zeros
    yc, xc, ah, aw = anchors.T
    same = np.stack([yc - ah / 2, xc - aw / 2, yc + ah / 2, xc + aw / 2], -1)
    np.testing.assert_allclose(encode_boxes(same, anchors).numpy(), 0.0, atol=1e-4)


def test_decode_and_nms_is_class_agnostic_like_the_tflite_op(tiny_config):
    anchors = make_anchors(tiny_config)
    a = len(anchors)
    enc = np.zeros((1, a, 4), np.float32)
    logits = np.full((1, a, 6), -10.0, np.float32)
    logits[0, 0, 3] = 3.0          # anchor 0: class index 2 (class id 3), score sigmoid(3)
    logits[0, 1, 4] = 2.0          # anchor 1 overlaps anchor 0 (same cell), another class: suppressed
    far = 6 * 6 * tiny_config.anchors_per_location[0] - 1  # last anchor of level 0: far corner
    logits[0, far, 1] = 1.0
    res = decode_and_nms(enc, logits, config=tiny_config.to_json(), max_detections=10, iou_threshold=0.3)
    assert res["count"].tolist() == [2]
    np.testing.assert_allclose(res["scores"][0, :2], [1 / (1 + np.exp(-3)), 1 / (1 + np.exp(-1))], rtol=1e-5)
    assert res["classes"][0, :2].tolist() == [2.0, 0.0]
    yc, xc, h, w = anchors[0]
    np.testing.assert_allclose(res["boxes"][0, 0], [yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], atol=1e-5)
    # per-class NMS keeps the overlapping box of the other class
    res = decode_and_nms(enc, logits, anchors, tiny_config, max_detections=10, iou_threshold=0.3, per_class=True)
    assert res["count"].tolist() == [3]


def test_config_json_round_trip(tiny_config):
    d = json.loads(json.dumps(tiny_config.to_json()))
    assert d["anchors"]["count"] == len(make_anchors(tiny_config))
    assert d["box_scales"] == [10.0, 10.0, 5.0, 5.0]
    assert ModelConfig.from_json(d) == tiny_config


@pytest.mark.parametrize("kwargs, match", [
    ({"input_size": (100, 100)}, r"input_size \[100, 100\].*multiple of 32"),
    ({"input_size": (32, 32)}, r"input_size \[32, 32\]"),
    ({"alpha": 0.3}, r"alpha 0.3"),
    ({"labels": ["a", "b"]}, r"2 names but num_classes is 5"),
    ({"strides": (8, 32), "fpn_channels": 64}, r"consecutive"),
    ({"anchor_scales": ((0.1,),)}, r"one non-empty list per stride"),
])
def test_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("fpn", [0, 16])
def test_three_levels_with_an_extra_stride_build(fpn):
    cfg = ModelConfig(input_size=(64, 64), strides=(16, 32, 64), fpn_channels=fpn,
                      anchor_scales=((0.15,), (0.3,), (0.6,)), aspect_ratios=(1.0,))
    model = build_detector(cfg)
    box, cls = model(np.zeros((1, 64, 64, 3), np.float32))
    assert box.shape[1] == len(make_anchors(cfg)) == 4 * 4 + 2 * 2 + 1


def test_loss_decreases_when_overfitting_one_batch(tiny_config, tiny_dataset):
    from edgeship.base.tfcompat import keras

    keras.utils.set_random_seed(0)
    data = train_data.load_training_data(str(tiny_dataset), "train", (96, 96), 5, max_images=4)
    anchors = make_anchors(tiny_config)
    images, targets = next(iter(train_data.make_dataset(data, anchors, tiny_config, batch_size=4, training=False)))
    model = build_detector(tiny_config)
    step, _ = loss.make_step_fns(model, keras.optimizers.Adam(3e-3), 5, training.LossConfig())
    losses = [sum(float(v) for v in step(images, targets)) for _ in range(25)]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0], losses
