"""Train the SSDLite MobileNetV2 detector from scratch on a Dataset artifact.

The pieces the QAT step reuses live in edgeship.detection: ``stream`` (the split streamed from its
TFRecord shards with tf.data: decoding, resize policy, augmentation and anchor matching; nothing
held whole in memory), :func:`detection_loss` (sigmoid focal + smooth-L1), :func:`fit` (the training
loop: progress display, TensorBoard, checkpoints, early stopping on val loss) and
:func:`evaluate_map` (COCO mAP of the Keras model with ``decode_and_nms`` + pycocotools).

Anchor matching: an anchor is positive for the ground-truth box it overlaps most when that IoU is
>= ``pos_iou`` (0.5), background below ``neg_iou`` (0.4), ignored in between; every ground-truth
box is also force-matched to its best anchor, so no object goes unassigned.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from components.train.settings import TRAIN
from edgeship.detection import distribute, stream
from edgeship.detection.model import (
    ModelConfig,
    build_detector,
    make_anchors,
)
from edgeship.detection.train_data import dataset_labels
from edgeship.detection.training import (
    LossConfig,
    configure_devices,
    evaluate_map,
    export_model,
    fit,
)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` produced: the model directory and its figures."""

    model_dir: str
    config: dict
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    train_seconds: float
    ms_per_image: float
    val_map: float | None
    val_map50: float | None
    history: dict


def _model_config(info: Any, labels: list[str], size: tuple, alpha: float, strides: Sequence[int] | None,
                  anchor_scales: Sequence[Sequence[float]] | None,
                  aspect_ratios: Sequence[float] | None) -> tuple[ModelConfig, str]:
    """Build the ModelConfig from the dataset and the anchor overrides; return it and the resize policy."""
    kwargs: dict[str, Any] = {}
    if strides is not None:
        kwargs["strides"] = tuple(strides)
    if anchor_scales is not None:
        kwargs["anchor_scales"] = tuple(tuple(s) for s in anchor_scales)
    if aspect_ratios is not None:
        kwargs["aspect_ratios"] = tuple(aspect_ratios)
    policy = info.resize.get("policy", "stretch")  # the dataset's resize policy, kept by the model
    config = ModelConfig(input_size=size, alpha=alpha, num_classes=len(labels), labels=labels,
                         resize=policy, **kwargs)
    return config, policy


def _set_up_devices(seed: int, batch_size: int, learning_rate: float) -> tuple[str, Any, dict, Any]:
    """Pick the device and distribution strategy, seed, scale the hyperparameters; return (device, dist, scaling, xla)."""
    from edgeship.base.tfcompat import keras

    device = configure_devices()
    dist = distribute.choose_strategy()  # before anything starts TensorFlow's runtime
    keras.utils.set_random_seed(seed)
    scaling = distribute.scale_hyperparameters(batch_size, learning_rate, dist.replicas)
    dist.precision = distribute.precision_policy(dist.plan)
    xla = distribute.configure_xla()
    distribute.device_line(dist, scaling=scaling, xla=xla, log_it=True)
    return device, dist, scaling, xla


def _open_splits(dataset_uri: str, fmt: str, max_train_images: int | None, max_val_images: int | None,
                 num_classes: int, policy: str) -> tuple[Any, Any]:
    """Open the train and val splits as streamed sources."""
    train_src = stream.open_split(dataset_uri, "train", fmt=fmt, max_images=max_train_images,
                                  num_classes=num_classes, policy=policy)
    val_src = stream.open_split(dataset_uri, "val", fmt=fmt, max_images=max_val_images,
                                num_classes=num_classes, policy=policy)
    return train_src, val_src


def _complete_history(history: dict, *, device: str, train_seconds: float, seed: int, dist: Any, scaling: dict,
                      xla: Any, hyperparameters: dict, metrics: dict) -> None:
    """Add the run's device, timing, distribution, hyperparameters, mAP and float ms/image to the history."""
    history.update({"device": device, "train_seconds": train_seconds, "seed": seed,
                    "distribution": distribute.describe(dist, scaling=scaling, xla=xla),
                    "hyperparameters": hyperparameters,
                    "val_map": metrics.get("map"), "val_map50": metrics.get("map50")})
    steady = history["ms_per_image"][1:] or history["ms_per_image"]
    history["float_ms_per_image"] = float(np.median(steady))


def train(dataset_uri: str, out_dir: str | Path, *, epochs: int = TRAIN.epochs,
          batch_size: int = TRAIN.batch_size, alpha: float = TRAIN.alpha,
          input_size: Sequence[int] | None = None, learning_rate: float = TRAIN.learning_rate,
          seed: int = TRAIN.seed, patience: int = TRAIN.patience, weight_decay: float = 1e-4, warmup_epochs: float = 1.0,
          strides: Sequence[int] | None = None, anchor_scales: Sequence[Sequence[float]] | None = None,
          aspect_ratios: Sequence[float] | None = None, fmt: str = "tfrecord",
          max_train_images: int | None = None, max_val_images: int | None = None,
          evaluate: bool = True, saved_model: bool = True, progress: bool = True) -> TrainResult:
    """Train a detector from scratch on ``dataset_uri`` and write a Model artifact to ``out_dir``
    (weights.h5, model_config.json, anchors.npy, saved_model/, history.json, logs/, checkpoints/).

    ``input_size`` defaults to the dataset's image size. Raises ValueError for an input size the
    backbone cannot take, an empty split, or a label map that disagrees with the data.
    """
    from edgeship.base import progress as step_progress
    from edgeship.contracts.dataset import read_dataset_info

    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got epochs={epochs}, batch_size={batch_size}")
    labels = dataset_labels(dataset_uri)
    info = read_dataset_info(dataset_uri)
    size = tuple(input_size) if input_size else tuple(info.image_size)
    config, policy = _model_config(info, labels, size, alpha, strides, anchor_scales, aspect_ratios)
    device, dist, scaling, xla = _set_up_devices(seed, batch_size, learning_rate)
    out = distribute.worker_dir(out_dir, dist)  # non-chief workers write to a private folder
    t_start = time.perf_counter()
    step_progress.emit(phase="loading data")
    train_src, val_src = _open_splits(dataset_uri, fmt, max_train_images, max_val_images, len(labels), policy)
    anchors = make_anchors(config)
    loss_config = LossConfig()
    with distribute.precision_scope(dist.precision), dist.scope():
        model = build_detector(config)
    log.info("training %s (%d params, %d anchors) on %s: %d train / %d val images, %d epochs, batch %d",
             model.name, model.count_params(), len(anchors), device, train_src.images, val_src.images, epochs, batch_size)
    global_batch = scaling["global_batch_size"]
    train_ds = stream.training_dataset(train_src, anchors, config, batch_size=global_batch, training=True, seed=seed,
                                       loss_config=loss_config, repeat=True)
    val_ds = stream.training_dataset(val_src, anchors, config, batch_size=64, training=False, loss_config=loss_config)
    steps = max(1, train_src.images // global_batch)
    history = fit(model, train_ds, val_ds, epochs=epochs, steps_per_epoch=steps, batch_size=global_batch,
                  learning_rate=scaling["learning_rate"], num_classes=config.num_classes, out_dir=out,
                  loss_config=loss_config, patience=patience, warmup_epochs=warmup_epochs,
                  weight_decay=weight_decay, progress=progress, title="train", distribution=dist,
                  resume=distribute.should_resume(dist))
    if dist.precision != distribute.FLOAT32:  # export and convert a float32 model
        model = distribute.float32_copy(model, lambda: build_detector(config))
    train_seconds = time.perf_counter() - t_start
    step_progress.emit(phase="val mAP of the Keras model")
    metrics = evaluate_map(model, stream.eval_dataset(val_src, size), config, anchors) if evaluate else {}
    _complete_history(history, device=device, train_seconds=train_seconds, seed=seed, dist=dist, scaling=scaling,
                      xla=xla, metrics=metrics,
                      hyperparameters={"epochs": epochs, "batch_size": batch_size, "alpha": alpha,
                                       "input_size": list(size), "learning_rate": learning_rate,
                                       "weight_decay": weight_decay, "patience": patience,
                                       "warmup_epochs": warmup_epochs, "loss": asdict(loss_config)})
    step_progress.emit(phase="exporting", map=metrics.get("map"), map50=metrics.get("map50"))
    export_model(model, config, anchors, out, history, saved_model=saved_model)
    log.info("trained in %.0f s; val mAP@.5 %s, mAP %s; model in %s", train_seconds,
             metrics.get("map50"), metrics.get("map"), out)
    return TrainResult(str(out), config.to_json(), len(history["epoch"]), int(history["best_epoch"]),
                       float(history["best_val_loss"]), train_seconds, history["float_ms_per_image"],
                       metrics.get("map"), metrics.get("map50"), history)
