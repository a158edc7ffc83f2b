"""A val split larger than the in-memory budget is streamed: only its ground truth is held (zero-byte
stand-in images), every pass decodes it again, robustness slices are made as images are read, and
the evaluation comes out exactly as with the split in memory."""
from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest

from components.evaluate import core
from components.evaluate.robustness import make_slice
from edgeship.detection import runners
from edgeship.detection.dataset import load_split
from edgeship.detection.streamed import StreamedSplit, read_split, truth_of

data = pytest.importorskip("components.data.core")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    info = data.generate_dataset(out, seed=2, train=1, val=7, calibration=1, image_size=48)
    return str(out), info


def test_small_budget_streams_and_holds_only_ground_truth(dataset):
    uri, _ = dataset
    whole = load_split(uri, "val")
    streamed = read_split(uri, "val", in_memory_mb=48 * 48 * 3 * 2.5 / 2 ** 20)  # room for two images
    assert isinstance(streamed, StreamedSplit) and len(streamed) == len(whole) == 7
    for truth, ex in zip(truth_of(streamed), whole):
        assert truth.image.shape == ex.image.shape and not any(truth.image.strides)  # no pixels held
        assert truth.image_id == ex.image_id
        np.testing.assert_array_equal(truth.boxes, ex.boxes)
        np.testing.assert_array_equal(truth.labels, ex.labels)
    for a, b in zip(streamed, whole):  # every pass decodes the same pixels
        np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(streamed[3].image, whole[3].image)
    with pytest.raises(TypeError, match="read in order"):
        streamed[1:3]
    with pytest.raises(IndexError, match="#7"):
        streamed[7]


def test_fits_in_budget_stays_a_list_and_max_images_applies(dataset):
    uri, _ = dataset
    kept = read_split(uri, "val")
    assert isinstance(kept, list) and len(kept) == 7
    few = read_split(uri, "val", max_images=3, in_memory_mb=0)
    assert isinstance(few, StreamedSplit) and len(few) == 3 and len(list(few)) == 3


@pytest.mark.parametrize("name", ["dark", "blurred", "occluded"])
def test_slices_of_a_streamed_split_match_the_in_memory_ones(dataset, name):
    uri, _ = dataset
    whole, streamed = load_split(uri, "val"), read_split(uri, "val", in_memory_mb=0)
    for a, b in zip(make_slice(streamed, name, seed=5), make_slice(whole, name, seed=5)):
        np.testing.assert_array_equal(a.image, b.image)


def test_a_streamed_split_evaluates_exactly_as_in_memory(dataset, standin_variants, tmp_path, monkeypatch):
    uri, info = dataset
    variants = tmp_path / "variants"
    shutil.copytree(standin_variants, variants)
    (variants / "labels.txt").write_text("\n".join(info.class_names) + "\n")
    args = dict(latency_runs=2, latency_warmup=1, show_progress=False, bootstrap_resamples=20)
    in_memory = core.evaluate(variants, uri, tmp_path / "a", **args)
    real = runners.load_examples
    seen = []

    def streamed(*a, **kw):
        out = real(*a, **{**kw, "in_memory_mb": 0})
        seen.append(type(out[0]).__name__)
        return out

    monkeypatch.setattr(runners, "load_examples", streamed)
    monkeypatch.setattr(core, "load_examples", streamed)
    by_stream = core.evaluate(variants, uri, tmp_path / "b", **args)
    assert seen == ["StreamedSplit"]
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("a", "b"))
    for name in a["variants"]:
        for key in ("map", "map50", "per_class_ap", "robustness", "detections", "delta_map_ci", "calibration"):
            assert a["variants"][name][key] == b["variants"][name][key], (name, key)
    assert in_memory.objects == by_stream.objects and in_memory.images == by_stream.images == 7


def test_run_detector_batches_a_stream_in_order(dataset):
    uri, _ = dataset
    streamed = read_split(uri, "val", in_memory_mb=0)

    class Batched:
        batch_size = 3
        calls: list[int] = []

        def detect_batch(self, images):
            self.calls.append(len(images))
            return [float(np.asarray(im).mean()) for im in images]

    det = Batched()
    out = runners.run_detector(det, streamed)
    assert det.calls == [3, 3, 1]
    assert out == [float(ex.image.mean()) for ex in itertools.islice(load_split(uri, "val"), 7)]
