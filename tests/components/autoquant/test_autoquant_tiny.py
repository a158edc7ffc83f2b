"""Real conversions of a tiny model: full int8 misses a tight budget, selective int8 meets it by
keeping the named outlier layer float; layer report, curve files; no-quantizable-layers error."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from components.autoquant.core import (
    ConverterBuilder,
    count_int8_ops,
    keras_converter_maker,
    write_outputs,
)
from components.autoquant.search import NoQuantizableLayersError, search

HEAD = "StatefulPartitionedCall:0"  # the debugger's name for the `head` Dense output (the model output)


@pytest.fixture(scope="module")
def result(tiny, tmp_path_factory):
    model, builder, measure = tiny
    r = search(builder.build, measure, budget_pt=3.0, rank_layers=builder.rank_layers, has_qat=False, step=1)
    out = tmp_path_factory.mktemp("aq")
    files = write_outputs(r, out)
    return r, files, out


def test_full_int8_misses_and_selective_meets_by_keeping_named_layer_float(result):
    r, _, _ = result
    rows = {c.name: c for c in r.candidates}
    assert rows["full_int8"].delta_pt > 30.0                     # int8 destroys the small logits
    assert r.met_budget and r.chosen.scheme == "selective_int8"
    assert r.chosen.float_layers == [HEAD]                      # one named layer kept float
    assert r.chosen.delta_pt <= 3.0
    assert [c.name for c in r.candidates] == ["fp32", "full_int8", "selective_int8_f1"]


def test_ranking_names_the_outlier_layer_first(result):
    r, _, _ = result
    top, rest = r.layer_ranking[0], r.layer_ranking[1:]
    assert top.name == HEAD and top.op == "FULLY_CONNECTED"
    assert top.scale > 1.0                                       # its int8 step is huge: the outlier range
    assert all(top.score > 10 * s.score for s in rest)
    # RMSE/scale alone would rank it *last*: the reason the ranking uses per-channel NSR
    assert top.stats["rmse/scale"] < min(s.stats["rmse/scale"] for s in rest)


def test_selective_model_really_keeps_the_layer_float(result):
    from ai_edge_litert.interpreter import Interpreter

    r, _, _ = result
    full = next(c for c in r.candidates if c.name == "full_int8")
    assert count_int8_ops(full.tflite) == 2
    assert count_int8_ops(r.chosen.tflite) == 1                 # only `feat` still computes in int8
    interp = Interpreter(model_content=r.chosen.tflite)
    out = interp.get_output_details()[0]
    assert np.dtype(out["dtype"]) == np.float32


def test_reports_written(result):
    r, files, out = result
    assert (out / "selective_int8_f1.tflite").read_bytes() == r.chosen.tflite
    curve = json.loads((out / "tradeoff.json").read_text())
    assert [row["name"] for row in curve["rows"]] == ["fp32", "full_int8", "selective_int8_f1"]
    assert curve["chosen"] == "selective_int8_f1" and curve["met_budget"] is True
    assert {"size_bytes", "latency_ms", "metric", "delta_pt", "float_layers"} <= set(curve["rows"][2])
    md = (out / "tradeoff.md").read_text()
    assert "selective_int8_f1 **← chosen**" in md and HEAD in md
    assert (out / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    with (out / "layers.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["tensor_name"] == HEAD and rows[0]["rank"] == "1"
    assert HEAD in (out / "layers.md").read_text()
    saved = json.loads((out / "autoquant.json").read_text())
    assert saved["chosen"] == "selective_int8_f1" and saved["layer_ranking"][0]["name"] == HEAD


def test_denylist_with_unknown_layer_is_named(tiny):
    _, builder, _ = tiny
    with pytest.raises(ValueError, match="no_such_layer"):
        builder.debugger.quantize(["no_such_layer"])


def test_model_without_quantizable_layers_is_a_clear_error():
    from edgeship.base.tfcompat import keras
    from tests.support.autoquant_models import representative

    inp = keras.Input((8,), name="x")
    model = keras.Model(inp, keras.layers.Reshape((9 - 1,))(inp))
    rep = representative()
    builder = ConverterBuilder(keras_converter_maker(model, rep), rep)
    with pytest.raises(NoQuantizableLayersError, match="no quantizable layers"):
        search(builder.build, accuracy_measure_any(model), budget_pt=1.0, rank_layers=builder.rank_layers,
               has_qat=False)


def accuracy_measure_any(model):
    from components.autoquant.search import Measurement

    return lambda blob, spec: Measurement(metric=1.0, latency_ms=0.01)
