"""Quantization-aware training helpers (tfmot): the quantize scope and config for the input
Rescaling layer, annotating the detector, calibrating activation ranges, freezing BatchNorm
statistics and activation ranges for the fine-tune, moving QAT weights back into the float
layout, loading a QAT Model artifact, and timing steps."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.detection.model import ModelConfig, build_detector, make_anchors


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

    from edgeship.base.tfcompat import keras

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


def _inference_mode(training: Any = None) -> bool:
    """A BatchNormalization layer's ``_get_training_value`` that always answers inference."""
    return False


def batchnorm_layers(model: Any) -> list[Any]:
    """The BatchNormalization layers of ``model``, those inside tfmot's QuantizeWrappers included."""
    from edgeship.base.tfcompat import keras

    found = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # QuantizeWrapperV2 keeps the float layer in .layer
        if isinstance(inner, keras.layers.BatchNormalization):
            found.append(inner)
    return found


def freeze_batchnorm(model: Any, *, train_affine: bool = True) -> int:
    """Freeze the moving statistics of every BatchNormalization layer of ``model`` (a float or a
    QAT model): they normalize with their moving mean/variance in training steps too, and never
    update them. ``train_affine``: gamma and beta stay trainable (the TF1 ``contrib.quantize``
    recipe, tfmot's predecessor: freeze BN statistics, keep training, so the folded conv bias can
    still move); False also freezes them (``layer.trainable = False``, Keras's own inference mode).
    Call it before the first training step is traced. Returns how many layers it froze."""
    layers = batchnorm_layers(model)
    for bn in layers:
        if not train_affine:
            bn.trainable = False
        elif hasattr(bn, "_get_training_value"):
            bn._get_training_value = _inference_mode  # read by BatchNormalization.call on every call
        else:  # a Keras without the hook: fail loudly rather than silently re-estimate statistics
            raise RuntimeError(f"cannot freeze {bn.name}: {type(bn).__name__} has no _get_training_value")
    return len(layers)


def calibrate_ranges(qat_model: Any, float_model: Any, images: np.ndarray, batch_size: int = 32) -> int:
    """Start every activation quantizer at the float model's observed output range on ``images``.

    tfmot initializes activation ranges at [-6, 6] and moves them by an EMA with decay 0.999, so a
    short fine-tune would otherwise end far from the real ranges. Returns how many ranges were set.
    """
    from edgeship.base.tfcompat import keras

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


class _FixedRange:
    """Stands in for a tfmot activation quantizer while the ranges are fixed: fake-quantizes with
    the range it was given, as constants (``fake_quant_with_min_max_args``: the same nudged 8-bit
    grid as tfmot's ``fake_quant_with_min_max_vars`` on those values, a straight-through gradient
    inside it, and no min/max gradient, batch min/max or moving average to compute). The kernel
    multiplies by 1/scale where the vars kernel divides by scale, so a value within float error
    of a rounding midpoint can land one step away (measured: a few elements per layer). A per-axis
    quantizer, or an empty range (an uncalibrated input layer's [0, 0]), keeps its variables, in
    the quantizer's inference form."""

    def __init__(self, quantizer: Any, weights: dict):
        self.quantizer = quantizer
        lo, hi = (float(np.max(np.asarray(weights[k]))) for k in ("min_var", "max_var"))
        self.range = (lo, hi) if not getattr(quantizer, "per_axis", False) and lo < hi else None

    def __call__(self, inputs: Any, training: Any, weights: Any, **kwargs: Any) -> Any:
        from edgeship.base.tfcompat import tf

        if self.range is None:
            return self.quantizer(inputs, False, weights, **kwargs)
        return tf.quantization.fake_quant_with_min_max_args(
            inputs, min=self.range[0], max=self.range[1], num_bits=self.quantizer.num_bits,
            narrow_range=self.quantizer.narrow_range)


def _activation_quantizers(qat_model: Any) -> list[tuple[Any, str, Any, dict]]:
    """(layer, attribute, quantizer(s), range variables) of every activation quantizer: each
    wrapper's output quantizer and the model input's QuantizeLayer."""
    found = []
    for layer in qat_model.layers:
        if getattr(layer, "_output_quantizers", None):  # QuantizeWrapperV2: the layer's output
            found.append((layer, "_output_quantizers", layer._output_quantizers, layer._output_quantizer_vars))
        elif type(layer).__name__ == "QuantizeLayer" and getattr(layer, "quantizer", None):
            found.append((layer, "quantizer", layer.quantizer, layer.quantizer_vars))
    return found


@contextmanager
def fixed_ranges(qat_model: Any, enabled: bool = True) -> Iterator[int]:
    """While inside (when ``enabled``), the activation ranges of ``qat_model`` are fixed at their
    values on entry (calibrated): training steps fake-quantize with them as constants and compute
    no batch min/max nor moving average (tfmot's MovingAverageQuantizer, EMA decay 0.999), which
    makes a QAT step ~10-15 % cheaper on CPU. Weight ranges still follow the weights. Build and
    trace the training step inside; the range variables are not changed, and the original
    quantizers are put back on exit (a saved QAT model serializes them). Yields how many
    activation ranges it fixed."""
    found = _activation_quantizers(qat_model) if enabled else []
    if enabled and not found:
        raise RuntimeError("no tfmot activation quantizer found to fix (not a QAT model, or a tfmot whose "
                           "QuantizeWrapper has no _output_quantizers)")
    for layer, attr, value, range_vars in found:
        fixed = [_FixedRange(q, range_vars) for q in value] if attr == "_output_quantizers" \
            else _FixedRange(value, range_vars)
        setattr(layer, attr, fixed)
    try:
        yield len(found)
    finally:
        for layer, attr, value, _ in found:
            setattr(layer, attr, value)


def time_steps_interleaved(models: dict[str, Any], batches: list, num_classes: int, *, warmup: int = 2,
                           lr: float = 1e-4, losses: dict[str, Any] | None = None) -> dict[str, list[float]]:
    """Seconds per training step of each of ``models`` on ``batches``, timed in turns: after
    ``warmup`` untimed steps each, every batch is run by every model back to back (the order
    rotated per batch), so a change in machine load hits them alike. Returns {name: [seconds per
    timed batch]}. Trains throwaway optimizers' steps: pass models whose weights may change.
    ``losses``: a model's ``loss.step_loss`` (a distillation step runs its teacher too)."""
    from edgeship.base.tfcompat import keras
    from edgeship.detection.loss import make_step_fns
    from edgeship.detection.training import LossConfig

    losses = losses or {}
    steps = {name: make_step_fns(m, keras.optimizers.Adam(lr), num_classes, LossConfig(),
                                 loss=losses.get(name))[0] for name, m in models.items()}
    for step in steps.values():
        for images, targets in batches[:warmup]:
            step(images, targets)
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i, (images, targets) in enumerate(batches[warmup:]):
        for name in names[i % len(names):] + names[:i % len(names)]:
            t = time.perf_counter()
            c, _b = steps[name](images, targets)
            float(c)
            times[name].append(time.perf_counter() - t)
    return times


def time_steps(model: Any, batches: list, num_classes: int, *, warmup: int = 2, lr: float = 1e-4) -> float:
    """Median seconds per training step of ``model`` over ``batches`` (after ``warmup`` untimed
    steps). Trains a throwaway optimizer's steps: pass a model whose weights may change."""
    times = time_steps_interleaved({"model": model}, batches, num_classes, warmup=warmup, lr=lr)
    return float(np.median(times["model"]))
