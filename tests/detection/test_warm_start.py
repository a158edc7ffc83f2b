"""Warm start (edgeship/detection/warm_start.py): backbone weights from a Keras MobileNetV2 weights
file (Keras 2 and Keras 3 layouts, nested too), from 'imagenet' (loader replaced: no download) and
from a Model artifact; shape mismatches and missing files named; the backbone frozen with its BN in
inference mode; init_from loading everything, the backbone only (labels differ) or refusing
(architecture differs). One tiny config (96x96, alpha 0.35); few models are built."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgeship.detection import warm_start
from edgeship.detection.model import ModelConfig, build_detector, make_anchors

CFG = {"input_size": (96, 96), "alpha": 0.35}


def _randomize(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if "variance" in w.name
                               else rng.normal(0, 0.1, w.shape).astype(np.float32) for w in layer.weights])


def _mobilenet(alpha: float, include_top: bool = False, seed: int = 1):
    from edgeship.base.tfcompat import keras

    m = keras.applications.MobileNetV2(alpha=alpha, include_top=include_top, weights=None,
                                       input_shape=(96, 96, 3))
    _randomize(m, seed)
    return m


def _weights(model) -> dict[str, list[np.ndarray]]:
    return {x.name: [np.asarray(w) for w in x.get_weights()] for x in model.layers if x.weights}


def _assert_backbone_from(model, reference) -> None:
    ref = _weights(reference)
    layers = warm_start.backbone_layers(model)
    assert layers
    for layer in layers:
        for got, want in zip(layer.get_weights(), ref[layer.name]):
            np.testing.assert_array_equal(got, want, err_msg=layer.name)


def _heads(model) -> dict[str, list[np.ndarray]]:
    return {k: v for k, v in _weights(model).items() if not warm_start.is_backbone_layer(k)}


@pytest.fixture(scope="module")
def tiny() -> ModelConfig:
    return ModelConfig(**CFG)


@pytest.fixture(scope="module")
def reference():
    """A randomized Keras MobileNetV2(alpha 0.35, no top) standing in for pretrained weights."""
    return _mobilenet(0.35)


@pytest.fixture(scope="module")
def weights_file(reference, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_0.35_no_top.h5"
    reference.save_weights(str(path))
    return path


@pytest.fixture(scope="module")
def artifact(tiny, tmp_path_factory):
    """A Model artifact written by export_model (as the train step does), all weights randomized."""
    from edgeship.detection.training import export_model

    model = build_detector(tiny)
    _randomize(model, seed=7)
    out = tmp_path_factory.mktemp("artifact") / "model"
    export_model(model, tiny, make_anchors(tiny), out, {}, saved_model=False)
    return out, model


def test_weights_file_loads_the_backbone_only(tiny, reference, weights_file):
    model = build_detector(tiny)
    heads_before = _heads(model)
    report = warm_start.load_backbone_weights(model, tiny, str(weights_file))
    _assert_backbone_from(model, reference)
    for name, values in _heads(model).items():
        for a, b in zip(values, heads_before[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    layers = warm_start.backbone_layers(model)
    assert report["kind"] == "weights_file" and report["source"] == str(weights_file)
    assert report["layers_loaded"] == len(layers) and report["layers_skipped"] == []
    assert report["params_loaded"] == sum(int(np.prod(w.shape)) for x in layers for w in x.weights)
    assert report["source_layers_ignored"] == 0
    json.dumps(report)


def test_other_width_names_layer_and_both_shapes(tiny, tmp_path):
    path = tmp_path / "mobilenet_v2_0.5.h5"
    _mobilenet(0.5).save_weights(str(path))
    model = build_detector(tiny)
    before = _weights(model)
    with pytest.raises(ValueError) as err:
        warm_start.load_backbone_weights(model, tiny, path)
    msg = str(err.value)
    assert str(path) in msg and "another width" in msg
    m = re.search(r"layer '(\w+)' (\w+) has shape (\(.*?\)), the model's is (\(.*?\))", msg)
    assert m, msg
    layer = model.get_layer(m.group(1))
    assert warm_start.is_backbone_layer(layer.name)
    var = next(w for w in layer.weights if warm_start._short(w.name) == m.group(2))
    assert m.group(4) == str(tuple(var.shape)) and m.group(3) != m.group(4)
    for name, values in _weights(model).items():  # nothing written on a mismatch
        for a, b in zip(values, before[name]):
            np.testing.assert_array_equal(a, b)


def test_imagenet_copies_from_the_keras_loader_without_download(tiny, reference, monkeypatch):
    calls = []

    def fake(alpha, weights, input_shape=(224, 224, 3)):
        calls.append((alpha, weights, input_shape))
        return reference

    monkeypatch.setattr(warm_start, "_keras_mobilenetv2", fake)
    model = build_detector(tiny)
    report = warm_start.load_backbone_weights(model, tiny, "imagenet")
    assert calls == [(0.35, "imagenet", (96, 96, 3))]
    _assert_backbone_from(model, reference)
    assert report["kind"] == "imagenet" and report["layers_loaded"] == len(warm_start.backbone_layers(model))


def test_include_top_nested_and_keras3_layouts(tiny, reference, tmp_path):
    import h5py

    from edgeship.base.tfcompat import keras

    top = _mobilenet(0.35, include_top=True, seed=3)  # a classifier: its top is ignored
    top.save_weights(str(tmp_path / "top.h5"))
    nested = keras.Sequential([reference, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    nested.save_weights(str(tmp_path / "nested.h5"))
    with h5py.File(tmp_path / "k3.weights.h5", "w") as f:  # Keras 3: layers/<name>/vars/<i>
        for layer in reference.layers:
            g = f.create_group(f"layers/{layer.name}/vars")
            for i, w in enumerate(layer.get_weights()):
                g.create_dataset(str(i), data=w)
    model = build_detector(tiny)
    report = warm_start.load_backbone_weights(model, tiny, tmp_path / "top.h5")
    _assert_backbone_from(model, top)
    assert report["source_layers_ignored"] == 1  # 'predictions'
    for name in ("nested.h5", "k3.weights.h5"):
        _randomize(model, seed=11)
        warm_start.load_backbone_weights(model, tiny, tmp_path / name)
        _assert_backbone_from(model, reference)


def test_gcs_weights_file_is_read_through_storage(tiny, reference, weights_file, monkeypatch):
    from edgeship.base import storage

    asked = []

    def read_bytes(uri):
        asked.append(str(uri))
        return weights_file.read_bytes()

    monkeypatch.setattr(storage, "read_bytes", read_bytes)
    model = build_detector(tiny)
    report = warm_start.load_backbone_weights(model, tiny, "gs://bucket/pretrained/mnv2.h5")
    assert asked == ["gs://bucket/pretrained/mnv2.h5"] and report["kind"] == "weights_file"
    _assert_backbone_from(model, reference)


def test_artifact_as_backbone_source_and_init_from(tiny, artifact, monkeypatch):
    from edgeship.base import storage

    out, trained = artifact
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    model = build_detector(tiny)
    report = warm_start.load_backbone_weights(model, tiny, out)
    assert report["kind"] == "artifact" and report["source_layers_ignored"] > 0  # its heads
    _assert_backbone_from(model, trained)
    report = warm_start.init_from(model, tiny, str(out))
    assert report["scope"] == "all" and report["reason"] is None and report["layers_skipped"] == []
    for a, b in zip(model(x, training=False), trained(x, training=False)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    # the same from gs:// (each file read through storage.read_bytes)
    monkeypatch.setattr(storage, "read_bytes", lambda uri: (out / str(uri).rsplit("/", 1)[1]).read_bytes())
    _randomize(model, seed=5)
    assert warm_start.init_from(model, tiny, "gs://bucket/models/run-1/")["scope"] == "all"
    for a, b in zip(model(x, training=False), trained(x, training=False)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_init_from_other_labels_loads_backbone_only(tiny, artifact):
    out, trained = artifact
    labels = ["circle", "square", "triangle", "star", "pentagon"]
    relabeled = ModelConfig(**CFG, labels=labels)
    model = build_detector(relabeled)
    heads_before = _heads(model)
    report = warm_start.init_from(model, relabeled, out)
    assert report["scope"] == "backbone"
    assert "pentagon" in report["reason"] and "hexagon" in report["reason"]
    _assert_backbone_from(model, trained)
    for name, values in _heads(model).items():
        for a, b in zip(values, heads_before[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_init_from_other_architecture_names_the_fields(tiny, artifact):
    out, _ = artifact
    model = type("M", (), {"layers": [], "trainable_variables": []})()
    with pytest.raises(ValueError, match=r"alpha: artifact 0\.35, this model 0\.5"):
        warm_start.init_from(model, ModelConfig(**{**CFG, "alpha": 0.5}), out)
    with pytest.raises(ValueError, match=r"strides: artifact \[16, 32\], this model \[8, 16, 32\]"):
        warm_start.init_from(model, ModelConfig(**CFG, strides=(8, 16, 32),
                                                anchor_scales=((0.1,), (0.2,), (0.4,))), out)
    wider = ModelConfig(**{**CFG, "alpha": 0.5})
    with pytest.raises(ValueError, match="alpha 0.35 differs from the model's alpha 0.5"):
        warm_start.load_backbone_weights(model, wider, out)


def test_freeze_backbone_keeps_heads_and_bn_in_inference_mode(tiny):
    model = build_detector(tiny)
    backbone = {id(v) for x in warm_start.backbone_layers(model) for v in x.trainable_weights}
    assert backbone
    heads = {id(v) for v in model.trainable_variables} - backbone
    n = len(warm_start.backbone_layers(model))
    assert warm_start.set_backbone_trainable(model, False) == n
    trainable = {id(v) for v in model.trainable_variables}
    assert not trainable & backbone and heads <= trainable
    assert warm_start.set_backbone_trainable(model, False) == 0
    bn, head_bn = model.get_layer("bn_Conv1"), model.get_layer("head0_box_dw_bn")
    before, head_before = bn.moving_mean.numpy(), head_bn.moving_mean.numpy()
    x = np.random.default_rng(1).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    model(x, training=True)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)   # frozen BN: inference mode
    assert not np.array_equal(head_bn.moving_mean.numpy(), head_before)
    assert warm_start.set_backbone_trainable(model, True) == n
    assert backbone <= {id(v) for v in model.trainable_variables}


def test_bad_inputs_are_named(tiny, tmp_path):
    model = build_detector(tiny)
    assert warm_start.load_backbone_weights(model, tiny, "none")["layers_loaded"] == 0
    missing = tmp_path / "nowhere" / "mnv2.h5"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        warm_start.load_backbone_weights(model, tiny, str(missing))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        warm_start.init_from(model, tiny, tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    with pytest.raises(FileNotFoundError, match="model_config.json missing"):
        warm_start.init_from(model, tiny, tmp_path / "half")
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(ValueError, match=r"junk\.h5: not an HDF5"):
        warm_start.load_backbone_weights(model, tiny, junk)
    from edgeship.base.tfcompat import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense_x")])
    other.save_weights(str(tmp_path / "other.h5"))
    with pytest.raises(ValueError, match=r"other\.h5: none of its 1 layers .*dense_x"):
        warm_start.load_backbone_weights(model, tiny, tmp_path / "other.h5")
    with pytest.raises(ValueError, match="backbone_weights is empty"):
        warm_start.load_backbone_weights(model, tiny, "  ")
    with pytest.raises(TypeError, match="backbone_weights must be .* got int: 3"):
        warm_start.load_backbone_weights(model, tiny, 3)
    with pytest.raises(TypeError, match="trainable must be True or False, got 'no'"):
        warm_start.set_backbone_trainable(model, "no")
    with pytest.raises(TypeError, match="expected a Keras model .* got str"):
        warm_start.set_backbone_trainable("model", False)
