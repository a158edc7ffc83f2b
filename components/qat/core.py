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

import numpy as np

from components.train.detector import ModelConfig, build_detector, load_model, make_anchors

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


def _rescale_quantize_config() -> Any:
    """The QuantizeConfig for the input Rescaling layer (defined lazily: it subclasses tfmot)."""
    import tensorflow_model_optimization as tfmot

    quantizers = tfmot.quantization.keras.quantizers

    class RescaleQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """No weights to quantize; fake-quantize the output to 8 bits (moving-average range)."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                      narrow_range=False)]

        def get_config(self):
            return {}

    return RescaleQuantizeConfig


def quantize_scope() -> Any:
    """tfmot's quantize_scope with this module's custom QuantizeConfig registered."""
    import tensorflow_model_optimization as tfmot

    cls = _rescale_quantize_config()
    return tfmot.quantization.keras.quantize_scope({"RescaleQuantizeConfig": cls})


def quantize_detector(model: Any) -> Any:
    """Whole-model QAT wrapper of a float detector (weights carried over). Raises ValueError
    naming the layer when tfmot cannot annotate one."""
    import tensorflow_model_optimization as tfmot

    from edgeship.tfcompat import keras

    qk = tfmot.quantization.keras
    cls = _rescale_quantize_config()

    def annotate(layer):
        if isinstance(layer, keras.layers.Rescaling):
            return qk.quantize_annotate_layer(layer, quantize_config=cls())
        try:
            return qk.quantize_annotate_layer(layer)
        except Exception as exc:  # tfmot raises bare ValueError/RuntimeError with little context
            raise ValueError(f"QAT cannot annotate layer {layer.name!r} ({type(layer).__name__}): {exc}") from exc

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    with qk.quantize_scope({"RescaleQuantizeConfig": cls}):
        return qk.quantize_apply(annotated)


def calibrate_ranges(qat_model: Any, float_model: Any, images: np.ndarray, batch_size: int = 32) -> int:
    """Start every activation quantizer at the float model's observed output range on ``images``.

    tfmot initializes activation ranges at [-6, 6] and moves them by an EMA with decay 0.999, so a
    short fine-tune would otherwise end far from the real ranges. Returns how many ranges were set.
    """
    from edgeship.tfcompat import keras

    targets = []
    for layer in qat_model.layers:
        vars_ = {w.name.split("/")[-1].split(":")[0]: w for w in layer.weights}
        # the model input's QuantizeLayer: raw pixels. Its variables carry the layer's name, which
        # Keras numbers (quantize_layer_5_min) once other models were built in the process.
        in_min = f"{layer.name}_min"
        if layer.name.startswith("quantize_layer") and in_min in vars_:
            vars_[in_min].assign(0.0)
            vars_[f"{layer.name}_max"].assign(255.0)
        inner = getattr(layer, "layer", None)
        if inner is None:
            continue
        for prefix in ("output", "post_activation"):
            if f"{prefix}_min" in vars_ and f"{prefix}_max" in vars_:
                targets.append((vars_[f"{prefix}_min"], vars_[f"{prefix}_max"], inner.name))
    names = sorted({t[2] for t in targets})
    if not names:
        return 0
    probe = keras.Model(float_model.input, [float_model.get_layer(n).output for n in names])
    lo = dict.fromkeys(names, 0.0)
    hi = dict.fromkeys(names, 0.0)
    for i in range(0, len(images), batch_size):
        outs = probe(np.asarray(images[i:i + batch_size], np.float32), training=False)
        outs = outs if isinstance(outs, list) else [outs]
        for n, o in zip(names, outs):
            o = np.asarray(o)
            lo[n], hi[n] = min(lo[n], float(o.min())), max(hi[n], float(o.max()))
    for mn, mx, n in targets:
        mn.assign(lo[n])
        mx.assign(max(hi[n], lo[n] + 1e-3))
    return len(targets)


def float_weights_from_qat(qat_model: Any, float_model: Any) -> None:
    """Copy the (fine-tuned) kernels and BN parameters of a QAT model into a float detector.

    tfmot's wrappers keep the float layers' variable names (``Conv1/kernel:0``); the quantizer
    variables (``quant_*/...``) have no float counterpart and are skipped."""
    values = {w.name: w for w in qat_model.weights}
    missing = [w.name for w in float_model.weights if w.name not in values]
    if missing:
        raise ValueError(f"the QAT model lacks {len(missing)} float weights, e.g. {missing[:3]}")
    for w in float_model.weights:
        src = values[w.name]
        if tuple(src.shape) != tuple(w.shape):
            raise ValueError(f"QAT weight {w.name} has shape {tuple(src.shape)}, the float one {tuple(w.shape)}")
        w.assign(src)


def load_qat_model(model_dir: str | Path) -> tuple[Any, ModelConfig, np.ndarray]:
    """Rebuild the QAT model of a qat output dir: (keras QAT model with qat_weights.h5 loaded,
    ModelConfig, anchors). Convert it with ``tf.lite.TFLiteConverter.from_keras_model``."""
    d = Path(model_dir)
    path = d / "qat_weights.h5"
    if not path.is_file():
        raise FileNotFoundError(f"QAT weights not found: {path} (is {d} a qat output directory?)")
    config = ModelConfig.load(d / "model_config.json")
    with quantize_scope():
        model = quantize_detector(build_detector(config))
        try:
            model.load_weights(str(path))
        except (ValueError, OSError) as exc:
            raise ValueError(f"cannot load {path} into the QAT detector model_config.json describes: {exc}") from exc
    anchors_path = d / "anchors.npy"
    anchors = np.load(anchors_path) if anchors_path.is_file() else make_anchors(config)
    return model, config, anchors


def time_steps(model: Any, batches: list, num_classes: int, *, warmup: int = 2, lr: float = 1e-4) -> float:
    """Median seconds per training step of ``model`` over ``batches`` (after ``warmup`` untimed
    steps). Trains a throwaway optimizer's steps: pass a model whose weights may change."""
    from components.train.core import LossConfig, make_step_fns
    from edgeship.tfcompat import keras

    step, _ = make_step_fns(model, keras.optimizers.Adam(lr), num_classes, LossConfig())
    for images, targets in batches[:warmup]:
        step(images, targets)
    times = []
    for images, targets in batches[warmup:]:
        t = time.perf_counter()
        c, _b = step(images, targets)
        float(c)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def qat(model_dir: str | Path, dataset_uri: str, out_dir: str | Path, *, epochs: int = 3,
        batch_size: int = 16, learning_rate: float = 2e-4, seed: int = 0, patience: int = 3,
        timing_steps: int = 10, fmt: str = "coco", max_train_images: int | None = None,
        max_val_images: int | None = None, evaluate: bool = True, saved_model: bool = True,
        progress: bool = True) -> QatResult:
    """Quantization-aware fine-tuning of the float detector in ``model_dir`` on ``dataset_uri``;
    writes the QAT model directory (module docstring) to ``out_dir``.

    Before fine-tuning it times ``timing_steps`` float training steps and as many QAT steps on the
    same batches (history.json: ``step_time``). Raises ValueError when the dataset's classes
    disagree with the model's label map.
    """
    from components.train import core as tc
    from edgeship.tfcompat import keras

    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got epochs={epochs}, batch_size={batch_size}")
    out = Path(out_dir)
    float_model, config, anchors = load_model(model_dir)
    labels = tc.dataset_labels(dataset_uri)
    if labels != list(config.labels):
        raise ValueError(f"dataset {dataset_uri} has classes {labels} but the model in {model_dir} was "
                         f"trained on {list(config.labels)}")
    device = tc.configure_devices()
    keras.utils.set_random_seed(seed)
    t_start = time.perf_counter()
    train_data = tc.load_training_data(dataset_uri, "train", config.input_size, config.num_classes, fmt=fmt,
                                       max_images=max_train_images)
    val_data = tc.load_training_data(dataset_uri, "val", config.input_size, config.num_classes, fmt=fmt,
                                     max_images=max_val_images)
    loss_config = tc.LossConfig()
    train_ds = tc.make_dataset(train_data, anchors, config, batch_size=batch_size, training=True, seed=seed,
                               loss_config=loss_config).repeat()
    val_ds = tc.make_dataset(val_data, anchors, config, batch_size=64, training=False, loss_config=loss_config)

    qmodel = quantize_detector(float_model)
    n_ranges = calibrate_ranges(qmodel, float_model, train_data.images[:64])
    log.info("QAT model: %d layers, %d activation ranges calibrated on 64 train images",
             len(qmodel.layers), n_ranges)
    # step time: float vs QAT on the same batches, in this run (each on a throwaway copy)
    n_timing = max(3, int(timing_steps)) + 2
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

    steps = max(1, len(train_data) // batch_size)
    history = tc.fit(qmodel, train_ds, val_ds, epochs=epochs, steps_per_epoch=steps, batch_size=batch_size,
                     learning_rate=learning_rate, num_classes=config.num_classes, out_dir=out,
                     loss_config=loss_config, patience=patience, warmup_epochs=0.0, weight_decay=0.0,
                     progress=progress, title="qat")
    qat_seconds = time.perf_counter() - t_start
    metrics = tc.evaluate_map(qmodel, val_data, config, anchors) if evaluate else {}
    history.update({"device": device, "qat_seconds": qat_seconds, "seed": seed, "step_time": step_time,
                    "source_model": str(model_dir), "val_map": metrics.get("map"), "val_map50": metrics.get("map50"),
                    "hyperparameters": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate}})
    out.mkdir(parents=True, exist_ok=True)
    qmodel.save_weights(str(out / "qat_weights.h5"))
    fresh = build_detector(config)
    float_weights_from_qat(qmodel, fresh)
    tc.export_model(fresh, config, anchors, out, history, saved_model=False)
    if saved_model:
        with quantize_scope():
            qmodel.save(str(out / "qat_saved_model"), include_optimizer=False, save_format="tf")
    (out / "history.json").write_text(json.dumps(history, indent=2, default=float) + "\n")
    log.info("QAT done in %.0f s; val mAP@.5 %s, mAP %s (fake-quant Keras model); model in %s",
             qat_seconds, metrics.get("map50"), metrics.get("map"), out)
    return QatResult(str(out), len(history["epoch"]), float(history["best_val_loss"]),
                     step_time["float_ms_per_image"], step_time["qat_ms_per_image"], step_time["ratio"],
                     qat_seconds, metrics.get("map"), metrics.get("map50"), history)
