"""Quantization-aware fine-tuning of the whole detector (backbone and heads) with tfmot.

The float detector is annotated layer by layer (``quantize_annotate_layer``) and quantized with
``quantize_apply`` inside ``quantize_scope``, as tensorflow/models' QAT factory does. Every layer
uses tfmot's default 8-bit registry (Conv/DepthwiseConv + BN + ReLU6 folded patterns, Add,
Concatenate; ZeroPadding2D and Reshape pass through) except the input ``Rescaling`` layer, which
tfmot does not know: it gets :class:`RescaleQuantizeConfig` (no weights; its output, the first
conv's input, is fake-quantized to 8 bits).

Output directory (same layout as the train step's Model artifact, plus the QAT model):

- ``weights.h5``: the fine-tuned weights in the *float* layout (``load_model(dir)`` rebuilds the
  float detector with them);
- ``qat_weights.h5``: the QAT model's weights, quantizer ranges included; rebuild with
  :func:`load_qat_model` (``build_detector`` + :func:`quantize_detector` + ``load_weights``), then
  ``tf.lite.TFLiteConverter.from_keras_model(model)`` converts it;
- ``qat_saved_model/``: the QAT model as a SavedModel (serving signature; for tools that want files);
- ``model_config.json``, ``anchors.npy``, ``history.json`` (per-epoch losses, the fine-tune's
  schedule and why, and the float vs QAT step-time comparison measured in this run), ``logs/``,
  ``checkpoints/``.

The fine-tune (docs/pipeline.md, "QAT"): BatchNorm statistics frozen (``freeze_bn``: moving
mean/variance used and kept; gamma/beta still train), activation ranges fixed at their calibrated
values (``freeze_ranges``), at least ``min_steps`` optimizer steps (``epochs`` is a minimum:
:func:`fine_tune_schedule`), a 5 % linear warm-up then cosine decay of ``learning_rate`` to 1 %,
under TensorFlow's deterministic ops (``deterministic``).
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from components.qat.settings import OBJECTIVES, QAT
from edgeship.detection import distribute, stream
from edgeship.detection import train_data as data_lib
from edgeship.detection.model import build_detector, load_model
from edgeship.detection.qat import (
    calibrate_ranges,
    fixed_ranges,
    float_weights_from_qat,
    freeze_batchnorm,
    quantize_detector,
    quantize_scope,
    time_steps_interleaved,
)
from edgeship.detection.training import deterministic_by_default, epoch_schedule

log = logging.getLogger(__name__)

WARMUP_FRACTION = 0.05  # of the fine-tune's steps: Adam's first steps move every weight by ~lr
MAX_RAISED_EPOCHS = 30  # min_steps raises the epochs up to this many; then the epochs get longer


@dataclass
class QatResult:
    """What :func:`qat` produced."""

    model_dir: str
    epochs_run: int
    best_val_loss: float
    float_ms_per_image: float
    qat_ms_per_image: float
    step_time_ratio: float
    qat_seconds: float
    val_map: float | None
    val_map50: float | None
    history: dict
    schedule: dict = field(default_factory=dict)


def fine_tune_schedule(train_images: int, global_batch: int, *, epochs: int, min_steps: int,
                       patience: int) -> dict[str, Any]:
    """The fine-tune's length from the data (:func:`edgeship.detection.training.epoch_schedule`,
    epochs raised up to ``MAX_RAISED_EPOCHS``) and its lr schedule (history.json "schedule")."""
    schedule = epoch_schedule(train_images, global_batch, epochs=epochs, min_steps=min_steps, patience=patience,
                              max_raised_epochs=MAX_RAISED_EPOCHS)
    return {**schedule, "warmup_steps": round(WARMUP_FRACTION * schedule["total_steps"]),
            "lr_schedule": "linear warm-up, then cosine decay to 1% of the peak"}


def _check_labels(dataset_uri: str, model_dir: str | Path, config: Any) -> None:
    """Raise ValueError when the dataset's classes disagree with the model's label map."""
    labels = data_lib.dataset_labels(dataset_uri)
    if labels != list(config.labels):
        raise ValueError(f"dataset {dataset_uri} has classes {labels} but the model in {model_dir} was "
                         f"trained on {list(config.labels)}")


def _set_up_devices(seed: int, batch_size: int, learning_rate: float) -> tuple[str, Any, dict]:
    """Pick the device and distribution strategy (float32), seed, scale the hyperparameters; return (device, dist, scaling)."""
    from edgeship.base.tfcompat import keras
    from edgeship.detection import training as tc

    device = tc.configure_devices()
    dist = distribute.choose_strategy()  # before anything starts TensorFlow's runtime
    keras.utils.set_random_seed(seed)
    scaling = distribute.scale_hyperparameters(batch_size, learning_rate, dist.replicas)
    dist.precision = distribute.precision_policy(dist.plan, qat=True)  # always float32
    distribute.device_line(dist, scaling=scaling, log_it=True)
    return device, dist, scaling


def _open_splits(dataset_uri: str, config: Any, fmt: str, max_train_images: int | None,
                 max_val_images: int | None) -> tuple[Any, Any]:
    """Open the train and val splits as streamed sources with the model's classes and resize policy."""
    train_src = stream.open_split(dataset_uri, "train", fmt=fmt, max_images=max_train_images,
                                  num_classes=config.num_classes, policy=config.resize)
    val_src = stream.open_split(dataset_uri, "val", fmt=fmt, max_images=max_val_images,
                                num_classes=config.num_classes, policy=config.resize)
    return train_src, val_src


def _calibrated_qat_model(dist: Any, float_model: Any, train_src: Any, config: Any, freeze_bn: bool) -> Any:
    """Build the QAT model under the strategy, calibrate its activation ranges on 64 train images
    and (``freeze_bn``) freeze its BatchNorm statistics."""
    from edgeship.base import progress as step_progress

    step_progress.emit(phase="building and calibrating the QAT model")
    with dist.scope():  # the QAT model's variables: mirrored
        qmodel = quantize_detector(float_model)
        n_ranges = calibrate_ranges(qmodel, float_model, stream.first_images(train_src, config.input_size, 64))
    n_bn = freeze_batchnorm(qmodel) if freeze_bn else 0
    log.info("QAT model: %d layers, %d activation ranges calibrated on 64 train images, %d BatchNorm layers "
             "with frozen statistics", len(qmodel.layers), n_ranges, n_bn)
    return qmodel


NOT_TIMED = {"measured": False, "reason": "timing_steps=0", "float_ms_per_image": math.nan,
             "qat_ms_per_image": math.nan, "ratio": math.nan}


def _time_float_vs_qat(model_dir: str | Path, train_ds: Any, config: Any, batch_size: int, timing_steps: int,
                       device: str, *, freeze_bn: bool, freeze_ranges: bool, qat_loss: Any = None) -> dict:
    """Time float and QAT training steps on the same batches, in turns (each on a throwaway copy);
    return the step_time dict. "float" is the train step's own step (BatchNorm training), "qat"
    the fine-tune's step as configured (``qat_loss``: its objective, the float teacher's forward
    pass included); with ``freeze_bn`` a float step with frozen BatchNorm is
    timed too (``ratio_same_bn``: the fake-quant overhead alone)."""
    from edgeship.base import progress as step_progress

    n_timing = max(3, int(timing_steps)) + 2
    step_progress.emit(phase="timing float vs QAT steps")
    batches = list(train_ds.take(n_timing))
    models = {"float": load_model(model_dir)[0]}
    if freeze_bn:
        models["float_frozen_bn"] = load_model(model_dir)[0]
        freeze_batchnorm(models["float_frozen_bn"])
    models["qat"] = quantize_detector(load_model(model_dir)[0])
    if freeze_bn:
        freeze_batchnorm(models["qat"])
    with fixed_ranges(models["qat"], freeze_ranges):
        times = time_steps_interleaved(models, batches, config.num_classes, losses={"qat": qat_loss})
    del models
    med = {name: float(np.median(t)) for name, t in times.items()}
    step_time = {"batch_size": batch_size, "steps": n_timing - 2, "method": "median over batches, models timed in turns",
                 "freeze_bn": freeze_bn, "freeze_ranges": freeze_ranges,
                 "float_ms_per_step": 1000 * med["float"], "qat_ms_per_step": 1000 * med["qat"],
                 "float_ms_per_image": 1000 * med["float"] / batch_size,
                 "qat_ms_per_image": 1000 * med["qat"] / batch_size, "ratio": med["qat"] / med["float"]}
    if "float_frozen_bn" in med:
        step_time["float_frozen_bn_ms_per_step"] = 1000 * med["float_frozen_bn"]
        step_time["ratio_same_bn"] = med["qat"] / med["float_frozen_bn"]
    log.info("step time on %s, batch %d: float %.1f ms, QAT %.1f ms (%.2fx)%s", device, batch_size,
             1000 * med["float"], 1000 * med["qat"], step_time["ratio"],
             f"; float with frozen BN {step_time['float_frozen_bn_ms_per_step']:.1f} ms "
             f"({step_time['ratio_same_bn']:.2f}x)" if "ratio_same_bn" in step_time else "")
    return step_time


def _export(qmodel: Any, config: Any, anchors: Any, out: Path, history: dict, saved_model: bool) -> None:
    """Write the QAT weights, the float-layout Model artifact, the QAT SavedModel and history.json."""
    from edgeship.detection import training as tc

    out.mkdir(parents=True, exist_ok=True)
    qmodel.save_weights(str(out / "qat_weights.h5"))
    fresh = build_detector(config)
    float_weights_from_qat(qmodel, fresh)
    tc.export_model(fresh, config, anchors, out, history, saved_model=False)
    if saved_model:
        with quantize_scope():
            qmodel.save(str(out / "qat_saved_model"), include_optimizer=False, save_format="tf")
    (out / "history.json").write_text(json.dumps(history, indent=2, default=float) + "\n")


def _objective_loss(objective: str, model_dir: str | Path, dist: Any) -> Any:
    """The fine-tune's loss (``loss.step_loss``): the labels' detection loss ("labels"), the
    distance to the float model's outputs ("distill"), or both summed ("both")."""
    from edgeship.detection.loss import step_loss

    if objective == "labels":
        return step_loss()
    with dist.scope():
        teacher = load_model(model_dir)[0]
    teacher.trainable = False
    return step_loss(teacher, labels_too=objective == "both")


def _fine_tune(qmodel: Any, datasets: tuple[Any, Any], schedule: dict, *, learning_rate: float, config: Any,
               out: Path, dist: Any, freeze_ranges: bool, progress: bool, loss_config: Any,
               loss: Any = None) -> dict:
    """Run the fine-tune (training.fit) with the schedule and ``loss`` (train and val:
    :func:`_objective_loss`); return its history."""
    from edgeship.detection import training as tc

    log.info("QAT fine-tune: %d epochs x %d steps = %d steps, lr %g (warm-up %d steps, cosine), patience %d: %s",
             schedule["epochs"], schedule["steps_per_epoch"], schedule["total_steps"], learning_rate,
             schedule["warmup_steps"], schedule["patience"], schedule["reason"])
    with fixed_ranges(qmodel, freeze_ranges):
        return tc.fit(qmodel, *datasets, epochs=schedule["epochs"], steps_per_epoch=schedule["steps_per_epoch"],
                      batch_size=schedule["global_batch_size"], learning_rate=learning_rate,
                      num_classes=config.num_classes, out_dir=out, loss_config=loss_config,
                      patience=schedule["patience"],
                      warmup_epochs=(schedule["warmup_steps"] + 0.5) / schedule["steps_per_epoch"],
                      weight_decay=0.0, progress=progress, title="qat", distribution=dist,
                      resume=distribute.should_resume(dist), loss=loss)


@deterministic_by_default(QAT.deterministic)
def qat(model_dir: str | Path, dataset_uri: str, out_dir: str | Path, *, epochs: int = QAT.epochs,
        batch_size: int = QAT.batch_size, learning_rate: float = QAT.learning_rate,
        seed: int = QAT.seed, patience: int = QAT.patience, min_steps: int = QAT.min_steps,
        freeze_bn: bool = QAT.freeze_bn, freeze_ranges: bool = QAT.freeze_ranges,
        objective: str = QAT.objective, deterministic: bool = QAT.deterministic, timing_steps: int = 10,
        fmt: str = "tfrecord",
        max_train_images: int | None = None, max_val_images: int | None = None, evaluate: bool = True,
        saved_model: bool = True, progress: bool = True) -> QatResult:
    """Quantization-aware fine-tuning of the float detector in ``model_dir`` on ``dataset_uri``;
    writes the QAT model directory (module docstring) to ``out_dir``.

    ``epochs`` is a minimum and ``min_steps`` may raise it (:func:`fine_tune_schedule`);
    ``learning_rate`` is the peak of a warm-up + cosine schedule; ``freeze_bn``: BatchNorm
    statistics frozen; ``freeze_ranges``: activation ranges fixed at their calibrated values;
    ``objective``: "distill" fine-tunes towards the float model's own outputs on the train
    images (and keeps the epoch closest to them on val), "labels" towards the labels, "both"
    on the sum of the two losses;
    ``deterministic``: TensorFlow's deterministic ops (the same seed gives the same model).
    Before fine-tuning it times ``timing_steps`` float and QAT training steps on the same batches
    (history.json: ``step_time``; 0 = not timed, which saves tracing three more models: the
    ratios are then NaN). Raises ValueError when the dataset's classes disagree with the
    model's label map, or on a bad epochs / batch_size / min_steps / patience / objective.
    """
    from edgeship.base import progress as step_progress
    from edgeship.detection import training as tc

    fine_tune_schedule(1, batch_size, epochs=epochs, min_steps=min_steps, patience=patience)  # bad args: now
    if isinstance(timing_steps, bool) or int(timing_steps) != timing_steps or timing_steps < 0:
        raise ValueError(f"qat timing_steps must be an integer >= 0 (0 = not timed), got {timing_steps!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"qat objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    float_model, config, anchors = load_model(model_dir)
    _check_labels(dataset_uri, model_dir, config)
    device, dist, scaling = _set_up_devices(seed, batch_size, learning_rate)
    out = distribute.worker_dir(out_dir, dist)  # non-chief workers write to a private folder
    t_start = time.perf_counter()
    step_progress.emit(phase="loading data")
    train_src, val_src = _open_splits(dataset_uri, config, fmt, max_train_images, max_val_images)
    loss_config = tc.LossConfig()
    global_batch = scaling["global_batch_size"]
    schedule = {**fine_tune_schedule(train_src.images, global_batch, epochs=epochs, min_steps=min_steps,
                                     patience=patience), "global_batch_size": global_batch,
                "learning_rate": scaling["learning_rate"]}
    train_ds = stream.training_dataset(train_src, anchors, config, batch_size=global_batch, training=True,
                                       seed=seed, loss_config=loss_config, repeat=True)
    val_ds = stream.training_dataset(val_src, anchors, config, batch_size=64, training=False, loss_config=loss_config)
    qmodel = _calibrated_qat_model(dist, float_model, train_src, config, freeze_bn)
    loss = _objective_loss(objective, model_dir, dist)
    step_time = _time_float_vs_qat(model_dir, train_ds, config, batch_size, timing_steps, device,
                                   freeze_bn=freeze_bn, freeze_ranges=freeze_ranges, qat_loss=loss) \
        if timing_steps > 0 else dict(NOT_TIMED)
    history = _fine_tune(qmodel, (train_ds, val_ds), schedule, learning_rate=scaling["learning_rate"],
                         config=config, out=out, dist=dist, freeze_ranges=freeze_ranges, progress=progress,
                         loss_config=loss_config, loss=loss)
    qat_seconds = time.perf_counter() - t_start
    step_progress.emit(phase="val mAP of the QAT model")
    metrics = tc.evaluate_map(qmodel, stream.eval_dataset(val_src, config.input_size), config, anchors) \
        if evaluate else {}
    step_progress.emit(phase="exporting", map=metrics.get("map"), map50=metrics.get("map50"))
    history.update({"device": device, "qat_seconds": qat_seconds, "seed": seed, "step_time": step_time,
                    "schedule": schedule, "distribution": distribute.describe(dist, scaling=scaling),
                    "source_model": str(model_dir), "val_map": metrics.get("map"), "val_map50": metrics.get("map50"),
                    "hyperparameters": {"epochs": epochs, "min_steps": min_steps, "batch_size": batch_size,
                                        "learning_rate": learning_rate, "patience": patience, "freeze_bn": freeze_bn,
                                        "freeze_ranges": freeze_ranges, "objective": objective,
                                        "deterministic": deterministic,
                                        "weight_decay": 0.0, "warmup_fraction": WARMUP_FRACTION}})
    _export(qmodel, config, anchors, out, history, saved_model)
    log.info("QAT done in %.0f s; val mAP@.5 %s, mAP %s (fake-quant Keras model); model in %s",
             qat_seconds, metrics.get("map50"), metrics.get("map"), out)
    return QatResult(str(out), len(history["epoch"]), float(history["best_val_loss"]),
                     step_time["float_ms_per_image"], step_time["qat_ms_per_image"], step_time["ratio"],
                     qat_seconds, metrics.get("map"), metrics.get("map50"), history, schedule)
