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


def test_qat_runs_and_writes_a_loadable_model_dir(float_model_dir, qat_dataset, tmp_path):
    out = tmp_path / "qat"
    result = core.qat(float_model_dir, str(qat_dataset), out, epochs=1, batch_size=8, timing_steps=3,
                      progress=False, saved_model=False, evaluate=False)
    for name in ("weights.h5", "qat_weights.h5", "model_config.json", "anchors.npy", "history.json"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    st = history["step_time"]
    assert st["float_ms_per_image"] > 0 and st["qat_ms_per_image"] > 0
    assert st["ratio"] == pytest.approx(st["qat_ms_per_step"] / st["float_ms_per_step"])
    assert result.step_time_ratio == pytest.approx(st["ratio"])
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"]).all()

    qmodel, cfg, anchors = qat_lib.load_qat_model(out)
    fmodel, _, _ = load_model(out)         # float layout, QAT-tuned weights
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    qb, qc = qmodel(x, training=False)
    fb, fc = fmodel(x, training=False)
    assert qb.shape == fb.shape and qc.shape == fc.shape == (2, len(anchors), cfg.num_classes + 1)
    assert _close(fc, qc) > 0.9


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
