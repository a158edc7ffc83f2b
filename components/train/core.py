"""Train the SSDLite MobileNetV2 detector on a Dataset artifact: from scratch or warm-started,
with anchors fitted to the training boxes or the defaults.

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

import functools
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from components.train.settings import TRAIN
from edgeship.detection import distribute, stream
from edgeship.detection.early_stop import check_metric as check_early_stop
from edgeship.detection.model import (
    ModelConfig,
    build_detector,
    make_anchors,
)
from edgeship.detection.train_data import dataset_labels
from edgeship.detection.training import (
    LossConfig,
    configure_devices,
    deterministic_by_default,
    epoch_schedule,
    evaluate_map,
    export_model,
    fit,
)

log = logging.getLogger(__name__)

MAX_RAISED_EPOCHS = 400  # min_steps raises the epochs up to this many; then the epochs get longer


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


ANCHOR_MODES = ("fit", "default")
HEADS = {"ssd": 0, "fpn": 64}  # head → ModelConfig.fpn_channels (FPN-lite: 64-channel merged levels)


def _check_settings(epochs: int, batch_size: int, anchors: str, head: str, frozen_epochs: int,
                    early_stop: str) -> None:
    """Refuse bad schedule / anchor / head / early-stop settings before any data is read."""
    check_early_stop(early_stop)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got epochs={epochs}, batch_size={batch_size}")
    if anchors not in ANCHOR_MODES:
        raise ValueError(f"anchors={anchors!r}: use one of {list(ANCHOR_MODES)}")
    if head not in HEADS:
        raise ValueError(f"head={head!r}: use one of {list(HEADS)}")
    if frozen_epochs < 0:
        raise ValueError(f"frozen_epochs must be >= 0, got {frozen_epochs}")


def _input_spec(dataset_uri: str, input_size: Sequence[int] | None) -> tuple[list[str], tuple, str]:
    """The dataset's labels, the model's input size (default the dataset's) and the dataset's
    resize policy (kept by the model)."""
    from edgeship.contracts.dataset import read_dataset_info

    info = read_dataset_info(dataset_uri)
    size = tuple(input_size) if input_size else tuple(info.image_size)
    return dataset_labels(dataset_uri), size, info.resize.get("policy", "stretch")


def _val_map(model: Any, *, val_src: Any, size: tuple, config: ModelConfig, anchors: np.ndarray) -> float:
    """The Keras model's mAP@[.5:.95] on the val split (early_stop "val_map", after each epoch)."""
    return evaluate_map(model, stream.eval_dataset(val_src, size), config, anchors)["map"]


def _model_config(labels: list[str], size: tuple, alpha: float, policy: str, layout: dict[str, Any],
                  head: str) -> ModelConfig:
    """The ModelConfig for the dataset's labels, the resize policy, the anchor layout and the head."""
    return ModelConfig(input_size=size, alpha=alpha, num_classes=len(labels), labels=labels,
                       resize=policy, fpn_channels=HEADS[head], **layout)


def _anchor_layout(mode: str, train_src: Any, size: tuple, strides: Sequence[int] | None,
                   anchor_scales: Sequence[Sequence[float]] | None,
                   aspect_ratios: Sequence[float] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The strides / anchor scales / aspect ratios to build with, and the record of how they were
    chosen: explicit values win; else ``fit`` clusters the training boxes
    (edgeship.detection.anchor_fit, at most 20,000 boxes), ``default`` keeps ModelConfig's."""
    from edgeship.detection import anchor_fit

    explicit: dict[str, Any] = {}
    if strides is not None:
        explicit["strides"] = tuple(strides)
    if anchor_scales is not None:
        explicit["anchor_scales"] = tuple(tuple(s) for s in anchor_scales)
    if aspect_ratios is not None:
        explicit["aspect_ratios"] = tuple(aspect_ratios)
    if explicit or mode == "default":
        return explicit, {"method": "explicit" if explicit else "default"}
    boxes = anchor_fit.collect_boxes(stream.examples(train_src, size).as_numpy_iterator(),
                                     max_boxes=20_000)
    fitted = anchor_fit.fit_anchors(boxes, size)
    record = fitted.as_record()
    log.info("anchors fitted to %d training boxes: strides %s, scales %s, aspect ratios %s; boxes no "
             "anchor matches at IoU >= 0.5: %.1f%% (default anchors: %.1f%%)%s", record["boxes"],
             record["strides"], record["anchor_scales"], record["aspect_ratios"],
             100 * record["unmatched_share"], 100 * record["unmatched_share_default"],
             f"; {fitted.reason}" if fitted.reason else "")
    return fitted.config_kwargs(), record


def _warm_start(model: Any, config: ModelConfig, backbone_weights: str, init_from: str) -> dict[str, Any]:
    """Load the starting weights: an earlier Model artifact (``init_from``) or backbone weights."""
    from edgeship.detection import warm_start

    if init_from and backbone_weights not in ("", "none"):
        raise ValueError(f"init_from={init_from!r} and backbone_weights={backbone_weights!r}: give one "
                         "(init_from already brings the earlier model's backbone)")
    if init_from:
        report = warm_start.init_from(model, config, init_from)
        if report.get("reason"):
            log.warning("init_from %s: %s", init_from, report["reason"])
    else:
        report = warm_start.load_backbone_weights(model, config, backbone_weights or "none")
    if report.get("layers_loaded"):
        log.info("warm start from %s: %d layers, %d parameters loaded", report.get("source"),
                 report["layers_loaded"], report.get("params_loaded", 0))
    return report


def _fit_frozen(model: Any, datasets: tuple[Any, Any], frozen_epochs: int, start: dict[str, Any],
                fit_kwargs: dict[str, Any], out: Path) -> dict[str, Any] | None:
    """``frozen_epochs`` epochs with the backbone frozen (heads only) before the full fine-tune."""
    from edgeship.detection import warm_start

    if not frozen_epochs:
        return None
    if not start.get("layers_loaded"):
        raise ValueError(f"frozen_epochs={frozen_epochs} needs pretrained weights (backbone_weights or "
                         "init_from): a frozen random backbone learns nothing")
    warm_start.set_backbone_trainable(model, False)
    history = fit(model, *datasets, **{**fit_kwargs, "epochs": frozen_epochs, "out_dir": out / "frozen",
                            "title": "train (backbone frozen)", "patience": frozen_epochs,
                            "resume": False})
    warm_start.set_backbone_trainable(model, True)
    return {k: history[k] for k in ("loss", "val_loss", "epoch") if k in history}


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


def _schedule(train_images: int, global_batch: int, epochs: int, min_steps: int, patience: int) -> dict[str, Any]:
    """The run's epochs, steps per epoch and patience (epoch_schedule), logged when raised."""
    schedule = epoch_schedule(train_images, global_batch, epochs=epochs, min_steps=min_steps, patience=patience,
                              max_raised_epochs=MAX_RAISED_EPOCHS)
    if schedule["epochs"] != epochs:
        log.info("schedule: %s", schedule["reason"])
    return schedule


@deterministic_by_default(TRAIN.deterministic)
def train(dataset_uri: str, out_dir: str | Path, *, epochs: int = TRAIN.epochs,
          batch_size: int = TRAIN.batch_size, alpha: float = TRAIN.alpha,
          input_size: Sequence[int] | None = None, learning_rate: float = TRAIN.learning_rate,
          seed: int = TRAIN.seed, patience: int = TRAIN.patience, weight_decay: float = 1e-4, warmup_epochs: float = 1.0,
          strides: Sequence[int] | None = None, anchor_scales: Sequence[Sequence[float]] | None = None,
          aspect_ratios: Sequence[float] | None = None, anchors: str = TRAIN.anchors,
          backbone_weights: str = TRAIN.backbone_weights, frozen_epochs: int = TRAIN.frozen_epochs,
          init_from: str = TRAIN.init_from, head: str = TRAIN.head,
          deterministic: bool = TRAIN.deterministic, min_steps: int = TRAIN.min_steps,
          early_stop: str = TRAIN.early_stop, fmt: str = "tfrecord",
          max_train_images: int | None = None, max_val_images: int | None = None,
          evaluate: bool = True, saved_model: bool = True, progress: bool = True) -> TrainResult:
    """Train a detector on ``dataset_uri``; write a Model artifact to ``out_dir`` (weights.h5,
    model_config.json, anchors.npy, saved_model/, history.json, logs/, checkpoints/).

    ``input_size``: default the dataset's. ``anchors``: "fit" (clustered on the training boxes) or
    "default"; explicit ``strides`` / ``anchor_scales`` / ``aspect_ratios`` win. Warm start:
    ``backbone_weights`` ("none", "imagenet", a weights file or Model artifact) or ``init_from``,
    then ``frozen_epochs``. ``head``: "ssd" | "fpn". ``deterministic``: a seed gives one model.
    ``min_steps`` (0 = ``epochs`` exactly): on a small train split the epochs are raised until
    the run makes that many optimizer steps, patience alike (history.json "schedule" says so).
    ``early_stop``: the epoch kept, "val_loss" | "val_map" | "none" (edgeship.detection.early_stop).
    Raises ValueError for an input size the backbone cannot take, an empty split, a label map
    that disagrees with the data, or weights that do not fit.
    """
    from edgeship.base import progress as step_progress

    _check_settings(epochs, batch_size, anchors, head, frozen_epochs, early_stop)
    labels, size, policy = _input_spec(dataset_uri, input_size)
    device, dist, scaling, xla = _set_up_devices(seed, batch_size, learning_rate)
    out = distribute.worker_dir(out_dir, dist)  # non-chief workers write to a private folder
    t_start = time.perf_counter()
    step_progress.emit(phase="loading data")
    train_src, val_src = _open_splits(dataset_uri, fmt, max_train_images, max_val_images, len(labels), policy)
    anchor_mode = anchors
    layout, anchor_record = _anchor_layout(anchor_mode, train_src, size, strides, anchor_scales, aspect_ratios)
    config = _model_config(labels, size, alpha, policy, layout, head)
    anchors = make_anchors(config)
    loss_config = LossConfig()
    with distribute.precision_scope(dist.precision), dist.scope():
        model = build_detector(config)
    start = _warm_start(model, config, backbone_weights, init_from)
    log.info("training %s (%d params, %d anchors) on %s: %d train / %d val images, %d epochs, batch %d",
             model.name, model.count_params(), len(anchors), device, train_src.images, val_src.images, epochs, batch_size)
    global_batch = scaling["global_batch_size"]
    schedule = _schedule(train_src.images, global_batch, epochs, min_steps, patience)
    train_ds = stream.training_dataset(train_src, anchors, config, batch_size=global_batch, training=True, seed=seed,
                                       loss_config=loss_config, repeat=True)
    val_ds = stream.training_dataset(val_src, anchors, config, batch_size=64, training=False, loss_config=loss_config)
    fit_kwargs = dict(steps_per_epoch=schedule["steps_per_epoch"], batch_size=global_batch,
                      learning_rate=scaling["learning_rate"], num_classes=config.num_classes, out_dir=out,
                      loss_config=loss_config, patience=schedule["patience"], warmup_epochs=warmup_epochs,
                      weight_decay=weight_decay, progress=progress, title="train", distribution=dist,
                      resume=distribute.should_resume(dist), early_stop=early_stop,
                      val_map=functools.partial(_val_map, val_src=val_src, size=size, config=config, anchors=anchors))
    frozen = _fit_frozen(model, (train_ds, val_ds), frozen_epochs, start, fit_kwargs, out)
    history = fit(model, train_ds, val_ds, epochs=schedule["epochs"], **fit_kwargs)
    history.update({"anchors": anchor_record, "warm_start": {**start, "frozen_epochs": frozen_epochs,
                                                             "frozen": frozen}, "schedule": schedule})
    if dist.precision != distribute.FLOAT32:  # export and convert a float32 model
        model = distribute.float32_copy(model, lambda: build_detector(config))
    train_seconds = time.perf_counter() - t_start
    step_progress.emit(phase="val mAP of the Keras model")
    metrics = evaluate_map(model, stream.eval_dataset(val_src, size), config, anchors) if evaluate else {}
    _complete_history(history, device=device, train_seconds=train_seconds, seed=seed, dist=dist, scaling=scaling,
                      xla=xla, metrics=metrics,
                      hyperparameters={"epochs": epochs, "batch_size": batch_size, "alpha": alpha, "input_size": list(size),
                                       "learning_rate": learning_rate, "weight_decay": weight_decay, "patience": patience,
                                       "warmup_epochs": warmup_epochs, "anchors": anchor_mode, "head": head,
                                       "backbone_weights": backbone_weights, "init_from": init_from, "min_steps": min_steps,
                                       "frozen_epochs": frozen_epochs, "deterministic": deterministic, "early_stop": early_stop,
                                       "loss": asdict(loss_config)})
    step_progress.emit(phase="exporting", map=metrics.get("map"), map50=metrics.get("map50"))
    export_model(model, config, anchors, out, history, saved_model=saved_model)
    log.info("trained in %.0f s; val mAP@.5 %s, mAP %s; model in %s", train_seconds,
             metrics.get("map50"), metrics.get("map"), out)
    return TrainResult(str(out), config.to_json(), len(history["epoch"]), int(history["best_epoch"]),
                       float(history["best_val_loss"]), train_seconds, history["float_ms_per_image"],
                       metrics.get("map"), metrics.get("map50"), history)
