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
- ``model_config.json``, ``anchors.npy``, ``history.json`` (per-epoch losses and the float vs QAT
  step-time comparison measured in this run), ``logs/``, ``checkpoints/``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.qat.settings import QAT
from edgeship.detection import distribute, stream
from edgeship.detection import train_data as data_lib
from edgeship.detection.model import build_detector, load_model
from edgeship.detection.qat import (
    calibrate_ranges,
    float_weights_from_qat,
    quantize_detector,
    quantize_scope,
    time_steps,
)

log = logging.getLogger(__name__)


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


def _calibrated_qat_model(dist: Any, float_model: Any, train_src: Any, config: Any) -> Any:
    """Build the QAT model under the strategy and calibrate its activation ranges on 64 train images."""
    from edgeship.base import progress as step_progress

    step_progress.emit(phase="building and calibrating the QAT model")
    with dist.scope():  # the QAT model's variables: mirrored
        qmodel = quantize_detector(float_model)
        n_ranges = calibrate_ranges(qmodel, float_model, stream.first_images(train_src, config.input_size, 64))
    log.info("QAT model: %d layers, %d activation ranges calibrated on 64 train images",
             len(qmodel.layers), n_ranges)
    return qmodel


def _time_float_vs_qat(model_dir: str | Path, train_ds: Any, config: Any, batch_size: int, timing_steps: int,
                       device: str) -> dict:
    """Time float and QAT training steps on the same batches (each on a throwaway copy); return the step_time dict."""
    from edgeship.base import progress as step_progress

    n_timing = max(3, int(timing_steps)) + 2
    step_progress.emit(phase="timing float vs QAT steps")
    batches = list(train_ds.take(n_timing))
    timing_float, _, _ = load_model(model_dir)
    float_s = time_steps(timing_float, batches, config.num_classes)
    del timing_float
    timing_qat = quantize_detector(load_model(model_dir)[0])
    qat_s = time_steps(timing_qat, batches, config.num_classes)
    del timing_qat
    step_time = {"batch_size": batch_size, "steps": n_timing - 2, "float_ms_per_step": 1000 * float_s,
                 "qat_ms_per_step": 1000 * qat_s, "float_ms_per_image": 1000 * float_s / batch_size,
                 "qat_ms_per_image": 1000 * qat_s / batch_size, "ratio": qat_s / float_s}
    log.info("step time on %s, batch %d: float %.1f ms, QAT %.1f ms (%.2fx)", device, batch_size,
             1000 * float_s, 1000 * qat_s, qat_s / float_s)
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


def qat(model_dir: str | Path, dataset_uri: str, out_dir: str | Path, *, epochs: int = QAT.epochs,
        batch_size: int = QAT.batch_size, learning_rate: float = QAT.learning_rate,
        seed: int = QAT.seed, patience: int = QAT.patience,
        timing_steps: int = 10, fmt: str = "tfrecord", max_train_images: int | None = None,
        max_val_images: int | None = None, evaluate: bool = True, saved_model: bool = True,
        progress: bool = True) -> QatResult:
    """Quantization-aware fine-tuning of the float detector in ``model_dir`` on ``dataset_uri``;
    writes the QAT model directory (module docstring) to ``out_dir``.

    Before fine-tuning it times ``timing_steps`` float training steps and as many QAT steps on the
    same batches (history.json: ``step_time``). Raises ValueError when the dataset's classes
    disagree with the model's label map.
    """
    from edgeship.base import progress as step_progress
    from edgeship.detection import training as tc

    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got epochs={epochs}, batch_size={batch_size}")
    float_model, config, anchors = load_model(model_dir)
    _check_labels(dataset_uri, model_dir, config)
    device, dist, scaling = _set_up_devices(seed, batch_size, learning_rate)
    out = distribute.worker_dir(out_dir, dist)  # non-chief workers write to a private folder
    t_start = time.perf_counter()
    step_progress.emit(phase="loading data")
    train_src, val_src = _open_splits(dataset_uri, config, fmt, max_train_images, max_val_images)
    loss_config = tc.LossConfig()
    global_batch = scaling["global_batch_size"]
    train_ds = stream.training_dataset(train_src, anchors, config, batch_size=global_batch, training=True,
                                       seed=seed, loss_config=loss_config, repeat=True)
    val_ds = stream.training_dataset(val_src, anchors, config, batch_size=64, training=False, loss_config=loss_config)
    qmodel = _calibrated_qat_model(dist, float_model, train_src, config)
    step_time = _time_float_vs_qat(model_dir, train_ds, config, batch_size, timing_steps, device)
    steps = max(1, train_src.images // global_batch)
    history = tc.fit(qmodel, train_ds, val_ds, epochs=epochs, steps_per_epoch=steps, batch_size=global_batch,
                     learning_rate=scaling["learning_rate"], num_classes=config.num_classes, out_dir=out,
                     loss_config=loss_config, patience=patience, warmup_epochs=0.0, weight_decay=0.0,
                     progress=progress, title="qat", distribution=dist, resume=distribute.should_resume(dist))
    qat_seconds = time.perf_counter() - t_start
    step_progress.emit(phase="val mAP of the QAT model")
    metrics = tc.evaluate_map(qmodel, stream.eval_dataset(val_src, config.input_size), config, anchors) \
        if evaluate else {}
    step_progress.emit(phase="exporting", map=metrics.get("map"), map50=metrics.get("map50"))
    history.update({"device": device, "qat_seconds": qat_seconds, "seed": seed, "step_time": step_time,
                    "distribution": distribute.describe(dist, scaling=scaling),
                    "source_model": str(model_dir), "val_map": metrics.get("map"), "val_map50": metrics.get("map50"),
                    "hyperparameters": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate}})
    _export(qmodel, config, anchors, out, history, saved_model)
    log.info("QAT done in %.0f s; val mAP@.5 %s, mAP %s (fake-quant Keras model); model in %s",
             qat_seconds, metrics.get("map50"), metrics.get("map"), out)
    return QatResult(str(out), len(history["epoch"]), float(history["best_val_loss"]),
                     step_time["float_ms_per_image"], step_time["qat_ms_per_image"], step_time["ratio"],
                     qat_seconds, metrics.get("map"), metrics.get("map50"), history)
