"""TFLiteDetector on tiny stand-in .tflite files (outputs per the contract), and LiteRT latency."""
import json

import numpy as np
import pytest

from edgeship.detection.latency import tflite_latency, time_calls
from edgeship.detection.runners import TFLiteDetector, resize_image
from tests.support.evaluate_data import (
    STANDIN_BOXES,
    STANDIN_CLASSES,
    STANDIN_COUNT,
    STANDIN_SCORES,
)


def spec(variants_dir, name):
    entry = {v["name"]: v for v in json.loads((variants_dir / "variants.json").read_text())["variants"]}[name]
    return variants_dir / entry["file"], entry


@pytest.mark.parametrize("name", ["fp32", "full_int8"])
def test_tflite_detector_decodes_outputs_through_the_map(standin_variants, name):
    path, entry = spec(standin_variants, name)
    det = TFLiteDetector(path, num_threads=1, input_spec=entry["input"], output_map=entry["outputs"],
                         num_classes=3)
    assert det.input_size == (32, 32)
    assert det.input_dtype == np.dtype(entry["input"]["dtype"])
    image = np.full((48, 64, 3), 255, np.uint8)  # resized to 32x32; brightness 1.0 → scores unchanged
    out = det(image)
    assert len(out) == STANDIN_COUNT  # the padded 4th detection is dropped by `count`
    np.testing.assert_allclose(out.boxes, STANDIN_BOXES[:STANDIN_COUNT], atol=1e-6)
    np.testing.assert_array_equal(out.labels, STANDIN_CLASSES[:STANDIN_COUNT].astype(int) + 1)
    np.testing.assert_allclose(out.scores, STANDIN_SCORES[:STANDIN_COUNT], atol=1e-5)
    dark = det(np.zeros((40, 40, 3), np.uint8))  # the model really reads its input
    np.testing.assert_allclose(dark.scores, 0.5 * STANDIN_SCORES[:STANDIN_COUNT], atol=1e-5)


def test_uint8_variant_is_fed_uint8_and_float_variant_float(standin_variants):
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for name, dtype in (("fp32", np.float32), ("full_int8", np.uint8)):
        path, entry = spec(standin_variants, name)
        x = TFLiteDetector(path, input_spec=entry["input"], output_map=entry["outputs"]).prepare(image)
        assert x.dtype == dtype and x.shape == (1, 32, 32, 3)
        np.testing.assert_array_equal(x[0].astype(np.float32), image.astype(np.float32))


def test_quantized_input_uses_scale_and_zero_point(standin_variants):
    path, entry = spec(standin_variants, "full_int8")
    det = TFLiteDetector(path, input_spec={**entry["input"], "scale": 2.0, "zero_point": 10},
                         output_map=entry["outputs"])
    x = det.prepare(np.full((32, 32, 3), 100, np.uint8))
    assert int(x[0, 0, 0, 0]) == 60  # 100 / 2 + 10


def test_resize_keeps_content():
    image = np.zeros((64, 64, 3), np.uint8)
    image[:32] = 200
    small = resize_image(image, (16, 16))
    assert small.shape == (16, 16, 3)
    assert small[:7].mean() == pytest.approx(200, abs=1) and small[9:].mean() == pytest.approx(0, abs=1)


def test_bad_inputs_are_named(standin_variants, tmp_path):
    path, entry = spec(standin_variants, "fp32")
    with pytest.raises(FileNotFoundError, match="nope.tflite"):
        TFLiteDetector(tmp_path / "nope.tflite", output_map=entry["outputs"])
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ValueError, match="corrupt.tflite"):
        TFLiteDetector(corrupt, output_map=entry["outputs"])
    with pytest.raises(ValueError, match="input dtype uint8"):
        TFLiteDetector(path, input_spec={**entry["input"], "dtype": "uint8"}, output_map=entry["outputs"])
    with pytest.raises(ValueError, match="no output map"):
        TFLiteDetector(path, input_spec=entry["input"], output_map=None)
    with pytest.raises(ValueError, match="matches none"):
        TFLiteDetector(path, output_map={**entry["outputs"], "count": {"index": 999, "name": "missing"}})


def test_class_index_outside_label_map_is_an_error(standin_variants):
    path, entry = spec(standin_variants, "fp32")
    det = TFLiteDetector(path, output_map=entry["outputs"], num_classes=2)  # the stand-in emits class 2
    with pytest.raises(ValueError, match="label map disagrees"):
        det(np.zeros((32, 32, 3), np.uint8))


def test_time_calls_counts_runs_and_orders_percentiles():
    calls = []
    stats = time_calls(lambda: calls.append(sum(range(2000))), runs=20, warmup=3)
    assert len(calls) == 23
    assert stats.runs == 20 and stats.warmup == 3
    assert 0 < stats.min <= stats.median <= stats.p90
    with pytest.raises(ValueError, match="runs"):
        time_calls(lambda: None, runs=0)


def test_tflite_latency_at_one_and_two_threads(standin_variants):
    path, entry = spec(standin_variants, "full_int8")
    det = TFLiteDetector(path, input_spec=entry["input"], output_map=entry["outputs"])
    x = det.prepare(np.zeros((32, 32, 3), np.uint8))
    for threads in (1, 2):
        stats = tflite_latency(path, x, threads=threads, runs=12, warmup=2)
        assert stats.runs == 12 and stats.threads == threads
        assert 0 < stats.median <= stats.p90
    with pytest.raises(ValueError, match="does not match"):
        tflite_latency(path, x.astype(np.float32), runs=2)


class _OnePass:
    """Examples that can be read once, in order (as a StreamedSplit is read per pass)."""

    def __init__(self, examples):
        self.examples, self.reads = examples, 0

    def __iter__(self):
        self.reads += 1
        assert self.reads == 1, "read twice"
        return iter(self.examples)


@pytest.mark.parametrize("name", ["fp32", "full_int8"])
def test_lanes_give_each_image_its_own_detections_in_order(standin_variants, name):
    from edgeship.detection.runners import run_detector
    from tests.support.evaluate_data import make_example

    path, entry = spec(standin_variants, name)
    kw = {"input_spec": entry["input"], "output_map": entry["outputs"], "num_classes": 3}
    one, three = TFLiteDetector(path, num_threads=1, **kw), TFLiteDetector(path, num_threads=3, **kw)
    assert one.lanes() == [one]
    lanes = three.lanes()
    assert len(lanes) == 3 and {lane.num_threads for lane in lanes} == {1} and three.lanes() is lanes
    examples = []
    for i in range(29):  # not a multiple of the lanes or of a chunk (24)
        ex = make_example(i, [[0.1, 0.1, 0.5, 0.5]], [1])
        ex.image[...] = (i * 9) % 256  # the stand-in's scores follow the image's brightness
        examples.append(ex)
    ticks = []
    got = run_detector(three, _OnePass(examples), on_image=lambda: ticks.append(1))
    want = [one(ex.image) for ex in examples]
    assert len(ticks) == len(got) == 29
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.scores, w.scores)
        np.testing.assert_array_equal(g.boxes, w.boxes)
        np.testing.assert_array_equal(g.labels, w.labels)
    assert len({float(g.scores[0]) for g in got}) > 10  # the images really differ


def test_an_error_in_a_lane_reaches_the_caller(standin_variants):
    from edgeship.detection.runners import run_detector
    from tests.support.evaluate_data import make_example

    path, entry = spec(standin_variants, "fp32")
    det = TFLiteDetector(path, num_threads=2, output_map=entry["outputs"], num_classes=2)
    with pytest.raises(ValueError, match="label map disagrees"):
        run_detector(det, [make_example(i, [[0.1, 0.1, 0.5, 0.5]], [1]) for i in range(5)])
