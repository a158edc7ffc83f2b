"""edgeship.detection.training: moved from components/train/core.py."""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgeship.contracts import model as model_contract
from edgeship.detection.model import (
    ModelConfig,
    decode_and_nms,
    model_outputs,
)

log = logging.getLogger(__name__)


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


@dataclass
class LossConfig:
    """Anchor matching and loss weights."""

    pos_iou: float = 0.5
    neg_iou: float = 0.4
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_weight: float = 1.0
    huber_delta: float = 1.0


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
                       *, fmt: str = "coco", max_images: int | None = None) -> TrainData:
    """Load a split and pack it into arrays at ``input_size``; raises ValueError for an empty split
    or a label outside 1..num_classes (naming the image)."""
    from PIL import Image

    from edgeship.detection.dataset import load_split

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
        if img.shape[:2] != (h, w):
            img = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
        images[i] = img
        n = len(ex.labels)
        if n:
            lab = np.asarray(ex.labels, np.int32)
            if lab.min() < 1 or lab.max() > num_classes:
                raise ValueError(f"image {ex.image_id} of split {split!r} in {dataset_uri} has class id "
                                 f"{int(lab.max() if lab.max() > num_classes else lab.min())}; the label map has "
                                 f"ids 1..{num_classes}")
            boxes[i, :n] = np.asarray(ex.boxes, np.float32).reshape(-1, 4)
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


def detection_loss(outputs: Any, targets: dict[str, Any], num_classes: int,
                   loss_config: LossConfig | None = None) -> tuple[Any, Any]:
    """(classification, box) losses of a batch, each summed and divided by the positive count:
    sigmoid focal loss over the K+1 columns (background column included) and smooth-L1 on the
    encodings of positive anchors."""
    from edgeship.base.tfcompat import tf

    lc = loss_config or LossConfig()
    box_pred, logits = model_outputs(outputs)
    cls = targets["cls"]
    onehot = tf.one_hot(cls, num_classes + 1, dtype=tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=onehot, logits=logits)
    p = tf.sigmoid(logits)
    p_t = onehot * p + (1 - onehot) * (1 - p)
    alpha_t = onehot * lc.focal_alpha + (1 - onehot) * (1 - lc.focal_alpha)
    focal = tf.reduce_sum(alpha_t * tf.pow(1 - p_t, lc.focal_gamma) * ce, -1) * targets["weight"]
    pos = tf.cast(cls > 0, tf.float32)
    npos = tf.maximum(tf.reduce_sum(pos), 1.0)
    diff = tf.abs(box_pred - targets["box"])
    d = lc.huber_delta
    huber = tf.where(diff < d, 0.5 * diff * diff / d, diff - 0.5 * d)
    box = tf.reduce_sum(tf.reduce_sum(huber, -1) * pos)
    return tf.reduce_sum(focal) / npos, lc.box_weight * box / npos


def lr_schedule(base_lr: float, total_steps: int, warmup_steps: int) -> Any:
    """Linear warm-up then cosine decay to 1% of ``base_lr``."""
    from edgeship.base.tfcompat import keras, tf

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            warm = base_lr * (step + 1) / max(1, warmup_steps)
            frac = tf.clip_by_value((step - warmup_steps) / max(1, total_steps - warmup_steps), 0.0, 1.0)
            cos = base_lr * (0.01 + 0.99 * 0.5 * (1 + tf.cos(math.pi * frac)))
            return tf.where(step < warmup_steps, warm, cos)

        def get_config(self):
            return {"base_lr": base_lr, "total_steps": total_steps, "warmup_steps": warmup_steps}

    return WarmupCosine()


def make_step_fns(model: Any, optimizer: Any, num_classes: int, loss_config: LossConfig) -> tuple[Callable, Callable]:
    """(train_step, eval_step) tf.functions returning (cls_loss, box_loss)."""
    from edgeship.base.tfcompat import tf

    @tf.function
    def train_step(images, targets):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            cls_loss, box_loss = detection_loss(outputs, targets, num_classes, loss_config)
            total = cls_loss + box_loss + (tf.add_n(model.losses) if model.losses else 0.0)
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return cls_loss, box_loss

    @tf.function
    def eval_step(images, targets):
        outputs = model(images, training=False)
        return detection_loss(outputs, targets, num_classes, loss_config)

    return train_step, eval_step


def configure_devices() -> str:
    """Use a GPU when one is present (memory growth on); return a description of the device."""
    from edgeship.base.tfcompat import tf

    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        try:
            tf.config.experimental.set_memory_growth(g, True)
        except RuntimeError:  # already initialized
            pass
    return f"GPU x{len(gpus)} ({gpus[0].name})" if gpus else "CPU"


def fit(model: Any, train_ds: Any, val_ds: Any, *, epochs: int, steps_per_epoch: int, batch_size: int,
        learning_rate: float, num_classes: int, out_dir: Path, loss_config: LossConfig,
        patience: int = 8, warmup_epochs: float = 1.0, weight_decay: float = 1e-4,
        progress: bool = True, title: str = "train") -> dict[str, Any]:
    """The training loop shared by train and qat. Writes TensorBoard logs to ``out_dir/logs``,
    checkpoints to ``out_dir/checkpoints``, and keeps the weights of the best val-loss epoch (set
    on ``model`` at the end). Returns the history dict (per-epoch losses, lr, step times)."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from edgeship.base.progress import Reporter
    from edgeship.base.tfcompat import keras, tf

    report = Reporter(interval=1.0)  # EDGESHIP_PROGRESS lines for the main job (when asked for)
    epoch_seconds: list[float] = []  # wall time of each finished epoch, validation included

    def _mean_epoch(seconds: list[float]) -> float:  # for the ETA; epoch 1 also traces tf.functions
        basis = seconds[1:] or seconds
        return sum(basis) / len(basis)

    total = max(1, epochs * steps_per_epoch)
    schedule = lr_schedule(learning_rate, total, int(warmup_epochs * steps_per_epoch))
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay, clipnorm=10.0)
    train_step, eval_step = make_step_fns(model, optimizer, num_classes, loss_config)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = tf.train.CheckpointManager(ckpt, str(out_dir / "checkpoints"), max_to_keep=2)
    writers = {k: tf.summary.create_file_writer(str(out_dir / "logs" / k)) for k in ("train", "val")}
    history: dict[str, list] = {"epoch": [], "loss": [], "cls_loss": [], "box_loss": [], "val_loss": [],
                                "val_cls_loss": [], "val_box_loss": [], "lr": [], "epoch_seconds": [],
                                "ms_per_image": []}
    best, best_epoch, best_weights, waited = math.inf, 0, model.get_weights(), 0
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*cols, disable=not progress, transient=False) as bar:
        task = bar.add_task(title, total=total, info="")
        step = 0
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            sums, n, t_first = np.zeros(2), 0, None
            for images, targets in train_ds.take(steps_per_epoch):
                c, b = train_step(images, targets)
                sums += (float(c), float(b))
                n += 1
                step += 1
                if t_first is None:
                    t_first = time.perf_counter()
                bar.update(task, advance=1, info=f"epoch {epoch}/{epochs} loss {sums.sum() / n:.3f}")
                if n > 1:
                    now = time.perf_counter()
                    per_step = (now - t_first) / (n - 1)
                    if epoch_seconds:
                        mean = _mean_epoch(epoch_seconds)
                        eta = max(0.0, mean - (now - t0)) + mean * (epochs - epoch)
                    else:
                        eta = per_step * (total - step)
                    report(epoch=epoch, epochs=epochs, batch=n, batches=steps_per_epoch,
                           loss=float(sums.sum() / n),
                           val_loss=history["val_loss"][-1] if history["val_loss"] else None,
                           img_s=batch_size / per_step if per_step > 0 else None, eta_s=eta)
            t1 = time.perf_counter()
            steady = (t1 - t_first) / max(1, n - 1) if n > 1 else (t1 - t0)
            report(force=True, epoch=epoch, epochs=epochs, phase="validating", loss=float(sums.sum() / max(1, n)))
            vs, vn = np.zeros(2), 0
            for images, targets in val_ds:
                c, b = eval_step(images, targets)
                k = int(images.shape[0])
                vs += (float(c) * k, float(b) * k)
                vn += k
            tr, va = sums / max(1, n), vs / max(1, vn)
            lr = float(schedule(step))
            for key, val in (("epoch", epoch), ("loss", tr.sum()), ("cls_loss", tr[0]), ("box_loss", tr[1]),
                             ("val_loss", va.sum()), ("val_cls_loss", va[0]), ("val_box_loss", va[1]),
                             ("lr", lr), ("epoch_seconds", t1 - t0), ("ms_per_image", 1000 * steady / batch_size)):
                history[key].append(float(val))
            with writers["train"].as_default():
                tf.summary.scalar("loss", tr.sum(), step=epoch)
                tf.summary.scalar("cls_loss", tr[0], step=epoch)
                tf.summary.scalar("box_loss", tr[1], step=epoch)
                tf.summary.scalar("learning_rate", lr, step=epoch)
            with writers["val"].as_default():
                tf.summary.scalar("loss", va.sum(), step=epoch)
                tf.summary.scalar("cls_loss", va[0], step=epoch)
                tf.summary.scalar("box_loss", va[1], step=epoch)
            manager.save(checkpoint_number=epoch)
            epoch_seconds.append(time.perf_counter() - t0)
            mean = _mean_epoch(epoch_seconds)
            report(force=True, mark=True, epoch=epoch, epochs=epochs, loss=float(tr.sum()),
                   val_loss=float(va.sum()), img_s=batch_size / steady if steady > 0 else None,
                   eta_s=mean * (epochs - epoch))
            log.info("%s epoch %d/%d: loss %.4f (cls %.4f box %.4f) val %.4f, %.1f s, %.2f ms/image",
                     title, epoch, epochs, tr.sum(), tr[0], tr[1], va.sum(), t1 - t0, 1000 * steady / batch_size)
            if va.sum() < best - 1e-4:
                best, best_epoch, best_weights, waited = float(va.sum()), epoch, model.get_weights(), 0
            else:
                waited += 1
                if waited >= patience:
                    report(force=True, mark=True, epoch=epoch, epochs=epochs,
                           phase=f"early stop (best epoch {best_epoch}, val {best:.3f})")
                    log.info("early stop: val loss has not improved for %d epochs (best %.4f at epoch %d)",
                             patience, best, best_epoch)
                    break
    for w in writers.values():
        w.flush()
    model.set_weights(best_weights)
    history["best_epoch"] = best_epoch  # type: ignore[assignment]
    history["best_val_loss"] = best  # type: ignore[assignment]
    return history


def predict_detections(model: Any, images: np.ndarray, config: ModelConfig, anchors: np.ndarray,
                       batch_size: int = 32, score_threshold: float = 0.01) -> list[Any]:
    """Run the Keras model and decode_and_nms over images → per-image Detections (class ids 1..K)."""
    from edgeship.detection.coco import Detections

    out = []
    for i in range(0, len(images), batch_size):
        batch = images[i:i + batch_size].astype(np.float32)
        r = decode_and_nms(*model_outputs(model(batch, training=False)), anchors, config,
                           score_threshold=score_threshold)
        for b in range(len(batch)):
            n = int(r["count"][b])
            out.append(Detections(np.clip(r["boxes"][b, :n], 0, 1), r["classes"][b, :n].astype(np.int32) + 1,
                                  r["scores"][b, :n]))
    return out


def evaluate_map(model: Any, data: TrainData, config: ModelConfig, anchors: np.ndarray) -> dict[str, float]:
    """COCO mAP@[.5:.95] and mAP@.5 of the Keras model on ``data`` (pycocotools)."""
    from edgeship.detection.coco import coco_evaluate

    dets = predict_detections(model, data.images, config, anchors)
    res = coco_evaluate(data.examples, dets, config.labels, validate=False)
    return {"map": float(res.map), "map50": float(res.map50)}


def export_model(model: Any, config: ModelConfig, anchors: np.ndarray, out_dir: Path,
                 history: dict, *, saved_model: bool = True) -> None:
    """Write the Model artifact files (see docs/contracts.md) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(out_dir / "weights.h5"))
    config.save(out_dir / model_contract.CONFIG_FILE)
    model_contract.write_anchors(out_dir, anchors)
    if saved_model:
        model.save(str(out_dir / "saved_model"), include_optimizer=False, save_format="tf")
    (out_dir / "history.json").write_text(json.dumps(history, indent=2, default=float) + "\n")
