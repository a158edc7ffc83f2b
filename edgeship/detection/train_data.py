"""Training data for the detector: the split as arrays (TrainData), augmentation, anchor target
assignment (IoU matching), and the tf.data pipeline that feeds ``fit``; LossConfig (what the
targets and the loss agree on)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeship.detection.model import (
    ModelConfig,
)


@dataclass
class TrainData:
    """A split as fixed-size arrays: images uint8 [N,H,W,3] (resized to the model input), boxes
    float32 [N,M,4] normalized (ymin, xmin, ymax, xmax), labels int32 [N,M] (0 = padding)."""

    images: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    examples: list = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.images)


def dataset_labels(dataset_uri: str) -> list[str]:
    """Class names (ids 1..K) of a Dataset artifact, checked against its labels.txt when present."""
    from edgeship.contracts.dataset import read_dataset_info

    info = read_dataset_info(dataset_uri)
    names = info.class_names
    if not names:
        raise ValueError(f"dataset {dataset_uri} lists no classes in dataset.json")
    labels_txt = Path(str(dataset_uri)) / "labels.txt"
    if labels_txt.is_file():
        lines = [ln.strip() for ln in labels_txt.read_text().splitlines() if ln.strip()]
        if lines != names:
            raise ValueError(f"label map {labels_txt} ({len(lines)} classes: {lines}) disagrees with "
                             f"dataset.json's classes ({len(names)}: {names})")
    return names


def load_training_data(dataset_uri: str, split: str, input_size: Sequence[int], num_classes: int,
                       *, fmt: str = "coco", max_images: int | None = None,
                       resize: str = "stretch") -> TrainData:
    """Load a split and pack it into arrays at ``input_size`` under the ``resize`` policy (stretch,
    or letterbox: aspect kept, padded, boxes moved with the image); raises ValueError for an empty
    split or a label outside 1..num_classes (naming the image)."""
    from PIL import Image

    from edgeship.detection.dataset import load_split
    from edgeship.detection.sources.images import boxes_to_input, resize_image

    examples = load_split(dataset_uri, split, fmt)
    if max_images:
        examples = examples[:max_images]
    if not examples:
        raise ValueError(f"split {split!r} of {dataset_uri} is empty")
    h, w = int(input_size[0]), int(input_size[1])
    m = max(1, max(len(ex.labels) for ex in examples))
    images = np.zeros((len(examples), h, w, 3), np.uint8)
    boxes = np.zeros((len(examples), m, 4), np.float32)
    labels = np.zeros((len(examples), m), np.int32)
    for i, ex in enumerate(examples):
        img = np.asarray(ex.image, np.uint8)
        ex_boxes = np.asarray(ex.boxes, np.float32).reshape(-1, 4)
        if resize != "stretch":
            img, transform = resize_image(img, (h, w), resize)
            ex_boxes = boxes_to_input(ex_boxes, transform)
        elif img.shape[:2] != (h, w):
            img = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
        images[i] = img
        n = len(ex.labels)
        if n:
            lab = np.asarray(ex.labels, np.int32)
            if lab.min() < 1 or lab.max() > num_classes:
                raise ValueError(f"image {ex.image_id} of split {split!r} in {dataset_uri} has class id "
                                 f"{int(lab.max() if lab.max() > num_classes else lab.min())}; the label map has "
                                 f"ids 1..{num_classes}")
            boxes[i, :n] = ex_boxes
            labels[i, :n] = lab
    return TrainData(images, boxes, labels, examples)


def _anchor_corners(anchors: np.ndarray) -> np.ndarray:
    y, x, h, w = anchors.T
    return np.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], 1).astype(np.float32)


def _iou(a: Any, b: Any, tf: Any) -> Any:
    """IoU [A, M] of corner boxes a [A,4] and b [M,4]."""
    ay0, ax0, ay1, ax1 = tf.unstack(a[:, None, :], axis=-1)
    by0, bx0, by1, bx1 = tf.unstack(b[None, :, :], axis=-1)
    ih = tf.maximum(0.0, tf.minimum(ay1, by1) - tf.maximum(ay0, by0))
    iw = tf.maximum(0.0, tf.minimum(ax1, bx1) - tf.maximum(ax0, bx0))
    inter = ih * iw
    union = (ay1 - ay0) * (ax1 - ax0) + (by1 - by0) * (bx1 - bx0) - inter
    return inter / tf.maximum(union, 1e-9)


def assign_targets(boxes: Any, labels: Any, anchors: np.ndarray, config: ModelConfig,
                   loss_config: LossConfig) -> dict[str, Any]:
    """Match one image's boxes [M,4] / labels [M] (0 = none) to the anchors → per-anchor targets:
    ``cls`` int32 [A] (0 = background), ``weight`` float32 [A] (0 = ignored), ``box`` [A,4]."""
    from edgeship.base.tfcompat import tf
    from edgeship.detection.model import encode_boxes

    corners = tf.constant(_anchor_corners(anchors))
    valid = labels > 0
    iou = _iou(corners, boxes, tf)
    iou = tf.where(valid[None, :], iou, -1.0)
    best_gt = tf.argmax(iou, axis=1, output_type=tf.int32)
    best_iou = tf.reduce_max(iou, axis=1)
    best_anchor = tf.argmax(iou, axis=0, output_type=tf.int32)           # [M]
    forced = tf.boolean_mask(best_anchor, valid)
    gts = tf.boolean_mask(tf.range(tf.shape(labels)[0], dtype=tf.int32), valid)
    best_gt = tf.tensor_scatter_nd_update(best_gt, forced[:, None], gts)
    best_iou = tf.tensor_scatter_nd_update(best_iou, forced[:, None], tf.ones_like(forced, tf.float32))
    pos = best_iou >= loss_config.pos_iou
    cls = tf.where(pos, tf.gather(labels, best_gt), 0)
    ignore = tf.logical_and(~pos, best_iou >= loss_config.neg_iou)
    weight = tf.where(ignore, 0.0, 1.0)
    box = encode_boxes(tf.gather(boxes, best_gt), anchors, config.box_scales)
    box = tf.where(pos[:, None], box, 0.0)
    return {"cls": cls, "weight": weight, "box": box}


def _augment(image: Any, boxes: Any, labels: Any, size: Sequence[int], seed_ops: Any, tf: Any,
             scale_range: tuple[float, float]) -> tuple[Any, Any, Any]:
    """Flips, scale jitter (random crop/zoom-out to the input size), brightness/contrast."""
    h, w = int(size[0]), int(size[1])
    image = tf.cast(image, tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    if tf.random.uniform([]) < 0.5:
        image = tf.image.flip_left_right(image)
        xmin, xmax = 1.0 - xmax, 1.0 - xmin
    if tf.random.uniform([]) < 0.5:
        image = tf.image.flip_up_down(image)
        ymin, ymax = 1.0 - ymax, 1.0 - ymin
    s = tf.random.uniform([], scale_range[0], scale_range[1])
    y0 = tf.random.uniform([], tf.minimum(0.0, 1.0 - s), tf.maximum(0.0, 1.0 - s))
    x0 = tf.random.uniform([], tf.minimum(0.0, 1.0 - s), tf.maximum(0.0, 1.0 - s))
    crop = tf.stack([y0, x0, y0 + s, x0 + s])[None]
    image = tf.image.crop_and_resize(image[None], crop, [0], [h, w], extrapolation_value=114.0)[0]
    nb = (tf.stack([ymin, xmin, ymax, xmax], -1) - tf.stack([y0, x0, y0, x0])) / s
    clipped = tf.clip_by_value(nb, 0.0, 1.0)
    area = (nb[:, 2] - nb[:, 0]) * (nb[:, 3] - nb[:, 1])
    carea = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = carea >= 0.5 * area
    labels = tf.where(keep & (labels > 0), labels, 0)
    boxes = tf.where(keep[:, None], clipped, 0.0)
    image = image + tf.random.uniform([], -25.0, 25.0)
    mean = tf.reduce_mean(image)
    image = (image - mean) * tf.random.uniform([], 0.75, 1.25) + mean
    return tf.clip_by_value(image, 0.0, 255.0), boxes, labels


def make_dataset(data: TrainData, anchors: np.ndarray, config: ModelConfig, *, batch_size: int,
                 training: bool, seed: int = 0, loss_config: LossConfig | None = None,
                 scale_range: tuple[float, float] = (0.8, 1.15)) -> Any:
    """tf.data pipeline of (images float32 [B,H,W,3] 0..255, targets dict) batches; training
    shuffles, augments and drops the last partial batch."""
    from edgeship.base.tfcompat import tf

    loss_config = loss_config or LossConfig()
    h, w = config.input_size
    ds = tf.data.Dataset.from_tensor_slices((data.images, data.boxes, data.labels))
    if training:
        ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)

    def prep(image, boxes, labels):
        if training:
            image, boxes, labels = _augment(image, boxes, labels, (h, w), None, tf, scale_range)
        else:
            image = tf.cast(image, tf.float32)
        return image, assign_targets(boxes, labels, anchors, config, loss_config)

    ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=training and len(data) >= batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclass
class LossConfig:
    """Anchor matching and loss weights."""

    pos_iou: float = 0.5
    neg_iou: float = 0.4
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_weight: float = 1.0
    huber_delta: float = 1.0
