"""The train step end to end on a tiny dataset, its anchor matching and augmentation, bad input."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from components.train import core
from edgeship.detection import train_data, training
from edgeship.detection.model import ModelConfig, load_model, make_anchors


@pytest.mark.slow
def test_train_writes_the_model_artifact_and_load_model_rebuilds_it(tiny_dataset, tmp_path):
    from edgeship.base.tfcompat import tf

    out = tmp_path / "model"
    # 1 epoch of 2 steps (16 images, batch 8) asked, min_steps 4: raised to 2 epochs
    result = core.train(str(tiny_dataset), out, epochs=1, min_steps=4, batch_size=8, alpha=0.35,
                        input_size=(96, 96), learning_rate=2e-3, seed=1, progress=False)
    for name in ("weights.h5", "model_config.json", "anchors.npy", "history.json", "saved_model/saved_model.pb"):
        assert (out / name).exists(), name
    assert list((out / "logs" / "train").glob("events.out.tfevents.*")), "no TensorBoard log"
    assert list((out / "checkpoints").glob("ckpt-*.index")), "no checkpoint"
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == len(history["val_loss"]) == result.epochs_run == 2
    assert history["schedule"]["epochs_requested"] == 1 and history["schedule"]["total_steps"] == 4
    assert "raised to 2 epochs of 2 steps" in history["schedule"]["reason"]
    assert all(np.isfinite(history["loss"])) and history["float_ms_per_image"] > 0
    assert 0.0 <= history["val_map50"] <= 1.0 and result.val_map50 == history["val_map50"]
    config = json.loads((out / "model_config.json").read_text())
    assert config["input_size"] == [96, 96] and config["num_classes"] == 5
    assert config["labels"] == ["circle", "square", "triangle", "star", "hexagon"]

    model, cfg, anchors = load_model(out)
    np.testing.assert_array_equal(anchors, make_anchors(cfg))
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    box, cls = model(x, training=False)
    served = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"](image=tf.constant(x))
    np.testing.assert_allclose(served["box_encodings"].numpy(), box.numpy(), atol=1e-4)
    np.testing.assert_allclose(served["class_logits"].numpy(), cls.numpy(), atol=1e-4)


def test_train_rejects_an_input_size_the_backbone_cannot_take(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"input_size \[100, 100\]"):
        core.train(str(tiny_dataset), tmp_path / "m", epochs=1, input_size=(100, 100), progress=False)


@pytest.mark.parametrize("fmt", ["tfrecord", "coco"])
def test_train_rejects_an_empty_split(tiny_dataset, tmp_path, fmt):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    ann = data / "coco" / "annotations" / "val.json"
    coco = json.loads(ann.read_text())
    coco["images"], coco["annotations"] = [], []
    ann.write_text(json.dumps(coco))
    meta = json.loads((data / "dataset.json").read_text())
    meta["splits"]["val"].update(images=0, objects=0)
    for rel in meta["splits"]["val"]["shards"]:
        (data / rel).write_bytes(b"")
    (data / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"split 'val' of .* is empty"):
        core.train(str(data), tmp_path / "m", epochs=1, input_size=(96, 96), fmt=fmt, progress=False)


def test_train_rejects_a_label_map_that_disagrees_with_the_data(tiny_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    labels = data / "labels.txt"
    labels.write_text("\n".join(labels.read_text().split()[:4]) + "\n")
    with pytest.raises(ValueError, match=r"label map .*labels.txt \(4 classes"):
        core.train(str(data), tmp_path / "m", epochs=1, input_size=(96, 96), progress=False)


def test_load_training_data_rejects_class_ids_outside_the_label_map(tiny_dataset):
    with pytest.raises(ValueError, match=r"ids 1..3"):
        train_data.load_training_data(str(tiny_dataset), "train", (96, 96), 3)


def _np_iou(anchors: np.ndarray, box: np.ndarray) -> np.ndarray:
    y, x, h, w = anchors.T
    ay0, ax0, ay1, ax1 = y - h / 2, x - w / 2, y + h / 2, x + w / 2
    ih = np.clip(np.minimum(ay1, box[2]) - np.maximum(ay0, box[0]), 0, None)
    iw = np.clip(np.minimum(ax1, box[3]) - np.maximum(ax0, box[1]), 0, None)
    inter = ih * iw
    return inter / (h * w + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def test_anchor_matching_force_matches_every_box():
    from edgeship.base.tfcompat import tf

    cfg = ModelConfig(input_size=(96, 96))
    anchors = make_anchors(cfg)
    # a tiny box no anchor overlaps at IoU 0.5, a box equal to anchor 100, anchor 7 grown to 2.2x
    # its area (IoU 0.45 with anchor 7: ignored; anchor 10, the larger scale, matches), padding
    y, x, h, w = anchors[100]
    y2, x2, h2, w2 = anchors[7] * np.array([1, 1, 2.2 ** 0.5, 2.2 ** 0.5], np.float32)
    gt = np.array([[0.40, 0.40, 0.43, 0.43], [y - h / 2, x - w / 2, y + h / 2, x + w / 2],
                   [y2 - h2 / 2, x2 - w2 / 2, y2 + h2 / 2, x2 + w2 / 2], [0, 0, 0, 0]], np.float32)
    labels = np.array([2, 4, 5, 0], np.int32)
    t = train_data.assign_targets(tf.constant(gt), tf.constant(labels), anchors, cfg, training.LossConfig())
    cls, weight, box = t["cls"].numpy(), t["weight"].numpy(), t["box"].numpy()
    iou = np.stack([_np_iou(anchors, g) for g in gt[:3]], 1)
    best = iou.max(1)
    forced = iou.argmax(0)
    pos = best >= 0.5
    pos[forced] = True
    # the tiny box sits inside anchors of equal area (ties): it gets exactly one of its best
    assert (cls == 2).sum() == 1
    assert iou[np.argmax(cls == 2), 0] == pytest.approx(iou[:, 0].max(), abs=1e-6)
    pos[forced[0]], pos[np.argmax(cls == 2)] = False, True
    np.testing.assert_array_equal(cls > 0, pos)
    assert cls[100] == 4 and cls[forced[2]] == 5
    np.testing.assert_allclose(box[100], 0.0, atol=1e-4)
    ignored = ~pos & (best >= 0.4)
    assert ignored[7] and weight[7] == 0 and cls[10] == 5
    np.testing.assert_array_equal(weight == 0, ignored)
    assert (box[~pos] == 0).all() and np.isfinite(box).all()


def test_augmented_batches_keep_boxes_inside_the_image(tiny_dataset):
    cfg = ModelConfig(input_size=(96, 96))
    data = train_data.load_training_data(str(tiny_dataset), "train", (96, 96), 5)
    ds = train_data.make_dataset(data, make_anchors(cfg), cfg, batch_size=8, training=True, seed=0)
    images, targets = next(iter(ds))
    assert images.shape == (8, 96, 96, 3) and images.dtype.name == "float32"
    assert float(images.numpy().min()) >= 0.0 and float(images.numpy().max()) <= 255.0
    assert (targets["cls"].numpy() > 0).sum() > 0
    assert targets["box"].shape == (8, len(make_anchors(cfg)), 4)
