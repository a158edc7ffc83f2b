"""The float model is saved once for all the schemes converted from it (ExportedModule), and a
conversion from that save is the same model as a conversion straight from the module."""
from __future__ import annotations

import logging

import numpy as np

from components.quantize import core
from edgeship.detection import convert


def _tensors(blob: bytes) -> list[tuple[str, tuple, bytes]]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=blob)
    out = []
    for d in interp.get_tensor_details():
        try:
            data = np.asarray(interp.get_tensor(d["index"])).tobytes()
        except ValueError:  # activations: no data before invoke
            data = b""
        out.append((d["name"], tuple(d["shape"]), data))
    return out


def test_conversion_from_the_one_save_is_the_same_model(q_models, tmp_path):
    loaded = convert.load_model_artifact(q_models["float"])
    cfg = convert.PostprocessConfig()
    exported = convert.export_module(loaded, cfg, tmp_path / "saved")
    assert (tmp_path / "saved" / "saved_model.pb").is_file()
    for scheme in ("fp32", "dynamic_int8"):
        direct = convert.convert_variant(loaded, scheme, postprocess=cfg)
        shared = convert.convert_variant(loaded, scheme, postprocess=cfg, exported=exported)
        assert len(direct) == len(shared)
        assert _tensors(direct) == _tensors(shared)  # every weight, name and shape
        # only the converter's note of where the model came from differs (concrete function / SavedModel)
        assert sum(a != b for a, b in zip(direct, shared)) <= 1


def test_quantize_saves_each_shared_source_once(q_models, q_dataset, tmp_path, monkeypatch):
    calls = []
    real = core.export_module

    def counting(loaded, cfg, directory):
        calls.append(str(loaded.model_dir))
        return real(loaded, cfg, directory)

    monkeypatch.setattr(core, "export_module", counting)
    result = core.quantize(q_models["float"], tmp_path / "out", qat_model_dir=q_models["qat"], calibration=str(q_dataset),
                           schemes=["fp32", "dynamic_int8", "float16", "qat_int8"], coreml=False, progress=False)
    assert sorted(v["name"] for v in result.variants) == ["dynamic_int8", "float16", "fp32", "qat_int8"]
    assert calls == [str(q_models["float"])]  # once for three float schemes; the QAT model has one


def test_a_failed_save_falls_back_to_converting_each_scheme(q_models, tmp_path, monkeypatch, caplog):
    def broken(loaded, cfg, directory):
        raise OSError(f"disk full at {directory}")

    monkeypatch.setattr(core, "export_module", broken)
    with caplog.at_level(logging.WARNING):
        result = core.quantize(q_models["float"], tmp_path / "out", schemes=["fp32", "float16"], coreml=False,
                               progress=False)
    assert [v["name"] for v in result.variants] == ["fp32", "float16"]
    assert "could not save the float model once" in caplog.text and "disk full" in caplog.text
