"""KerasDetector on a tiny (random-weight) train-step model directory, and the float_keras row."""
import json

import numpy as np
import pytest

detector = pytest.importorskip("edgeship.detection.model")

from components.evaluate import core
from edgeship.contracts import variants as variants_contract
from edgeship.detection.runners import KerasDetector
from tests.support.evaluate_data import standin_examples


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("float_model")
    config = detector.ModelConfig(input_size=(64, 64), num_classes=3, labels=["circle", "square", "triangle"])
    model = detector.build_detector(config)
    config.save(d / "model_config.json")
    model.save_weights(str(d / "weights.h5"))
    np.save(d / "anchors.npy", detector.make_anchors(config))
    return d


def test_keras_detector_returns_contract_detections(tiny_model_dir):
    det = KerasDetector(tiny_model_dir, score_threshold=0.0, max_detections=20)
    assert det.input_size == (64, 64) and det.num_classes == 3
    images = [np.random.default_rng(i).integers(0, 256, (48, 80, 3), np.uint8) for i in range(3)]
    batch = det.detect_batch(images)
    assert len(batch) == 3
    for out in batch:
        assert 0 < len(out) <= 20
        assert out.labels.min() >= 1 and out.labels.max() <= 3
        assert out.boxes.min() >= 0.0 and out.boxes.max() <= 1.0
        assert np.all(np.diff(out.scores) <= 1e-6)  # NMS output is sorted by score
    single = det(images[0])
    np.testing.assert_allclose(single.scores, batch[0].scores, atol=1e-5)


def test_missing_float_model_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        KerasDetector(tmp_path / "nothing-here")


def test_float_keras_row_is_the_reference(tiny_model_dir, standin_variants, tmp_path):
    specs, _ = variants_contract.load_variants(standin_variants)
    float_det = KerasDetector(tiny_model_dir, score_threshold=0.0)
    report = core.evaluate_examples(specs, standin_examples(3), ["circle", "square", "triangle"],
                                    float_detector=float_det, latency_runs=2, latency_warmup=0,
                                    slices=["dark"], show_progress=False)
    assert report.float_reference == "float_keras"
    keras_row = report.float_keras
    assert keras_row is not None and keras_row.size_bytes == (tiny_model_dir / "weights.h5").stat().st_size
    for row in report.variants.values():  # stand-ins are perfect, random Keras weights are not
        assert row.delta_map_vs_float == pytest.approx((keras_row.map - row.map) * 100, abs=1e-3)
        assert row.delta_map_vs_float < 0
        assert row.shift is not None
    core.write_report(report, tmp_path)
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["float_keras"]["map"] == pytest.approx(keras_row.map)
    assert "| float (Keras) |" in (tmp_path / "report.md").read_text()
