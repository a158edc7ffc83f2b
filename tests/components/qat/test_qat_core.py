"""QAT of the whole detector: annotation, start-of-training parity, a run, the output dir, bad input."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from components.qat import core
from edgeship.detection import qat as qat_lib
from edgeship.detection.model import load_model
from edgeship.detection.train_data import load_training_data

pytestmark = pytest.mark.slow  # trains a tiny float model and builds/traces QAT models


def _close(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_quantized_detector_wraps_every_layer_and_starts_close_to_float(float_model_dir, qat_dataset):
    float_model, cfg, _ = load_model(float_model_dir)
    qmodel = qat_lib.quantize_detector(float_model)
    kinds = {type(layer).__name__ for layer in qmodel.layers}
    assert {"QuantizeLayer", "QuantizeWrapperV2"} <= kinds
    wrapped = {layer.layer.name for layer in qmodel.layers if hasattr(layer, "layer")}
    float_layers = {layer.name for layer in float_model.layers if type(layer).__name__ != "InputLayer"}
    assert wrapped == float_layers                      # backbone and heads: nothing left out
    assert "quant_normalize" in {layer.name for layer in qmodel.layers}
    data = load_training_data(str(qat_dataset), "val", cfg.input_size, cfg.num_classes)
    assert qat_lib.calibrate_ranges(qmodel, float_model, data.images) > 50
    x = data.images[:4].astype(np.float32)
    fb, fc = float_model(x, training=False)
    qb, qc = qmodel(x, training=False)
    assert _close(fb, qb) > 0.95 and _close(fc, qc) > 0.95
    assert float(np.abs(np.asarray(fc) - np.asarray(qc)).mean()) < 0.1 * float(np.abs(np.asarray(fc)).mean()) + 0.05


QUICK = {"epochs": 1, "min_steps": 0, "batch_size": 8, "timing_steps": 0, "progress": False,
         "saved_model": False, "evaluate": False}


@pytest.fixture(scope="module")
def qat_run(float_model_dir, qat_dataset, tmp_path_factory):
    """One QAT fine-tune with the default recipe (frozen BN and ranges, deterministic), 1 epoch."""
    out = tmp_path_factory.mktemp("qat_run") / "qat"
    result = core.qat(float_model_dir, str(qat_dataset), out, **{**QUICK, "timing_steps": 3})
    return out, result


def _weights(model) -> dict[str, np.ndarray]:
    return {w.name: np.asarray(w) for w in model.weights}


def _ranges(model) -> dict[str, np.ndarray]:
    """The activation ranges of a QAT model (the wrappers' output_min/max)."""
    return {k: v for k, v in _weights(model).items() if k.split("/")[-1].split(":")[0] in ("output_min", "output_max")}


def _calibrated(float_model_dir, qat_dataset):
    """The QAT model as the qat step builds it before fine-tuning (ranges calibrated on 64 train images)."""
    from edgeship.detection import stream

    fmodel, cfg, _ = load_model(float_model_dir)
    qmodel = qat_lib.quantize_detector(fmodel)
    src = stream.open_split(str(qat_dataset), "train", fmt="tfrecord", num_classes=cfg.num_classes, policy=cfg.resize)
    qat_lib.calibrate_ranges(qmodel, fmodel, stream.first_images(src, cfg.input_size, 64))
    return qmodel


def _bn_moved(before_model, after_model) -> dict[str, bool]:
    """Per BatchNormalization variable kind: whether any layer's value changed between two float models."""
    after = _weights(after_model)
    moved = dict.fromkeys(("moving_mean", "moving_variance", "gamma", "beta"), False)
    layers = qat_lib.batchnorm_layers(before_model)
    assert len(layers) > 20
    for w in (w for layer in layers for w in layer.weights):
        kind = w.name.split("/")[-1].split(":")[0]
        moved[kind] |= not np.array_equal(np.asarray(w), after[w.name])
    return moved


def test_qat_runs_and_writes_a_loadable_model_dir(qat_run):
    out, result = qat_run
    for name in ("weights.h5", "qat_weights.h5", "model_config.json", "anchors.npy", "history.json"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    st = history["step_time"]
    assert st["float_ms_per_image"] > 0 and st["qat_ms_per_image"] > 0
    assert st["ratio"] == pytest.approx(st["qat_ms_per_step"] / st["float_ms_per_step"])
    assert st["ratio_same_bn"] == pytest.approx(st["qat_ms_per_step"] / st["float_frozen_bn_ms_per_step"])
    assert result.step_time_ratio == pytest.approx(st["ratio"])
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"]).all()
    assert history["schedule"]["epochs"] == 1 and history["schedule"]["total_steps"] == 2  # 16 images, batch 8
    assert result.schedule == history["schedule"]
    hp = history["hyperparameters"]
    assert (hp["freeze_bn"], hp["freeze_ranges"], hp["deterministic"], hp["min_steps"]) == (True, True, True, 0)
    assert hp["objective"] == "both"

    qmodel, cfg, anchors = qat_lib.load_qat_model(out)
    fmodel, _, _ = load_model(out)         # float layout, QAT-tuned weights
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    qb, qc = qmodel(x, training=False)
    fb, fc = fmodel(x, training=False)
    assert qb.shape == fb.shape and qc.shape == fc.shape == (2, len(anchors), cfg.num_classes + 1)
    assert _close(fc, qc) > 0.9


def test_frozen_bn_keeps_the_statistics_and_fixed_ranges_stay_calibrated(qat_run, float_model_dir, qat_dataset):
    """BN inside tfmot's wrappers: moving mean/variance exactly the float model's after the fine-tune,
    gamma/beta trained; the activation ranges exactly the calibrated ones."""
    out, _ = qat_run
    moved = _bn_moved(load_model(float_model_dir)[0], load_model(out)[0])
    assert moved == {"moving_mean": False, "moving_variance": False, "gamma": True, "beta": True}
    tuned = _ranges(qat_lib.load_qat_model(out)[0])
    start = _ranges(_calibrated(float_model_dir, qat_dataset))
    assert len(tuned) > 50 and tuned.keys() == start.keys()
    assert all(np.array_equal(tuned[k], start[k]) for k in tuned)


def test_without_the_freezes_bn_statistics_and_ranges_move(float_model_dir, qat_dataset, tmp_path):
    out = tmp_path / "qat"
    core.qat(float_model_dir, str(qat_dataset), out, **{**QUICK, "freeze_bn": False, "freeze_ranges": False,
                                                        "deterministic": False})
    moved = _bn_moved(load_model(float_model_dir)[0], load_model(out)[0])
    assert moved["moving_mean"] and moved["moving_variance"]
    step_time = json.loads((out / "history.json").read_text())["step_time"]  # timing_steps=0: not timed
    assert step_time["measured"] is False and np.isnan(step_time["ratio"])
    tuned = _ranges(qat_lib.load_qat_model(out)[0])
    start = _ranges(_calibrated(float_model_dir, qat_dataset))
    assert any(not np.array_equal(tuned[k], start[k]) for k in tuned)


def test_the_same_seed_gives_the_same_qat_model(qat_run, float_model_dir, qat_dataset, tmp_path):
    out, _ = qat_run
    again = tmp_path / "again"
    core.qat(float_model_dir, str(qat_dataset), again, **{**QUICK, "timing_steps": 3})  # as qat_run
    first, second = qat_lib.load_qat_model(out)[0].weights, qat_lib.load_qat_model(again)[0].weights
    assert len(first) == len(second) > 100  # in the same order (names carry Keras's layer numbers)
    assert [a.name for a, b in zip(first, second) if not np.array_equal(np.asarray(a), np.asarray(b))] == []


def test_fixed_ranges_quantize_as_tfmot_does_and_put_the_quantizers_back():
    """Inside fixed_ranges the constant-range fake-quant gives tfmot's own inference output (up to
    one quantization step where float rounding meets a grid midpoint); the ranges do not move in
    training calls; on exit the tfmot quantizers are back."""
    from edgeship.base.tfcompat import keras

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inp)
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization()(x))
    qmodel = qat_lib.quantize_detector(keras.Model(inp, keras.layers.Add()([x, x])))
    data = np.random.default_rng(0).normal(0, 2, (4, 8, 8, 3)).astype(np.float32)
    qmodel(data, training=True)                       # ranges move away from tfmot's initial [-6, 6]
    originals = {layer.name: list(layer._output_quantizers) for layer in qmodel.layers
                 if getattr(layer, "_output_quantizers", None)}
    reference = np.asarray(qmodel(data, training=False))
    ranges = _ranges(qmodel)
    with qat_lib.fixed_ranges(qmodel) as n:
        assert n == len(originals) + 1 >= 3            # + the model input's QuantizeLayer
        fixed = np.asarray(qmodel(data, training=False))
        last = {w.name.split("/")[-1].split(":")[0]: np.asarray(w) for w in qmodel.layers[-1].weights}
        step = float(last["output_max"] - last["output_min"]) / 255   # the output (Add) layer's grid
        assert np.abs(fixed - reference).max() <= step * 1.001 and np.mean(fixed == reference) > 0.99
        qmodel(data * 3, training=True)
        assert all(np.array_equal(v, _ranges(qmodel)[k]) for k, v in ranges.items())
    assert {k: list(qmodel.get_layer(k)._output_quantizers) for k in originals} == originals
    qmodel(data * 3, training=True)
    assert any(not np.array_equal(v, _ranges(qmodel)[k]) for k, v in ranges.items())
    with qat_lib.fixed_ranges(qmodel, enabled=False) as n:
        assert n == 0


def test_qat_rejects_a_dataset_with_other_classes(float_model_dir, qat_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(qat_dataset, data)
    info = json.loads((data / "dataset.json").read_text())
    info["classes"][0]["name"] = "ellipse"
    (data / "dataset.json").write_text(json.dumps(info))
    (data / "labels.txt").write_text("\n".join(c["name"] for c in info["classes"]) + "\n")
    with pytest.raises(ValueError, match="ellipse"):
        core.qat(float_model_dir, str(data), tmp_path / "q", epochs=1, progress=False)


def test_load_qat_model_names_a_missing_file(float_model_dir):
    with pytest.raises(FileNotFoundError, match="qat_weights.h5"):
        qat_lib.load_qat_model(float_model_dir)


def test_distillation_fine_tunes_towards_the_float_model(qat_run, float_model_dir, qat_dataset, tmp_path):
    """objective="distill": the loss it trains and validates on is the distance to the float
    model's outputs (not the labels' loss), and it moves the QAT model no further from the float
    model's outputs than the default fine-tune (qat_run: labels + distance, "both") does, with the
    same schedule."""
    labels, _ = qat_run
    out = tmp_path / "distill"
    core.qat(float_model_dir, str(qat_dataset), out, **{**QUICK, "objective": "distill"})
    history = json.loads((out / "history.json").read_text())
    assert history["hyperparameters"]["objective"] == "distill"
    assert history["val_loss"][0] < json.loads((labels / "history.json").read_text())["val_loss"][0]
    float_model, cfg, _ = load_model(float_model_dir)
    x = load_training_data(str(qat_dataset), "val", cfg.input_size, cfg.num_classes).images[:8].astype(np.float32)
    reference = np.asarray(float_model(x, training=False)[1])

    def gap(model_dir):
        return float(np.abs(np.asarray(qat_lib.load_qat_model(model_dir)[0](x, training=False)[1]) - reference).mean())

    assert gap(out) <= gap(labels) * 1.05


@pytest.mark.parametrize("steps", [-1, 2.5, True])
def test_qat_refuses_a_bad_timing_steps_before_reading_anything(steps, tmp_path):
    with pytest.raises(ValueError, match=f"timing_steps must be an integer >= 0.*got {steps!r}"):
        core.qat(tmp_path / "no-model", str(tmp_path / "no-data"), tmp_path / "q", timing_steps=steps)


def test_qat_names_an_unknown_objective(float_model_dir, qat_dataset, tmp_path):
    with pytest.raises(ValueError, match="'teacher'.*both, distill, labels"):
        core.qat(float_model_dir, str(qat_dataset), tmp_path / "q", objective="teacher", progress=False)
