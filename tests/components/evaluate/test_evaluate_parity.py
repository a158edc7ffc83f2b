"""The evaluator's two paths agree: the float Keras model (KerasDetector) and its fp32 .tflite
converted by the quantize step (TFLiteDetector, fused post-processing op) give the same detections
on the same images; the full-int8 conversion stays close. Skipped until both steps exist."""
import numpy as np
import pytest

detector = pytest.importorskip("edgeship.detection.model")
quantize = pytest.importorskip("components.quantize.core")

from components.evaluate.calibration import score_shift
from edgeship.detection.runners import KerasDetector, TFLiteDetector

pytestmark = pytest.mark.slow  # two real conversions (~35 s of CPU)


@pytest.fixture(scope="module")
def model_and_variants(tmp_path_factory):
    d = tmp_path_factory.mktemp("float_model")
    # a high class prior so that a random-weight model still scores above NMS's 0.01 threshold
    config = detector.ModelConfig(input_size=(64, 64), num_classes=3, labels=["a", "b", "c"],
                                  prior_probability=0.2)
    detector.build_detector(config).save_weights(str(d / "weights.h5"))
    config.save(d / "model_config.json")
    np.save(d / "anchors.npy", detector.make_anchors(config))
    loaded = quantize.load_model_artifact(d)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), np.uint8) for _ in range(4)]
    out = tmp_path_factory.mktemp("variants")
    variants = {}
    for scheme in ("fp32", "full_int8"):
        rep = quantize.representative_dataset(images) if scheme == "full_int8" else None
        path = out / f"{scheme}.tflite"
        path.write_bytes(quantize.convert_variant(loaded, scheme, representative=rep))
        variants[scheme] = (path, quantize.inspect_tflite(path, scheme))
    return d, variants, images


def test_keras_and_fp32_tflite_agree(model_and_variants):
    model_dir, variants, images = model_and_variants
    keras_det = KerasDetector(model_dir)
    path, spec = variants["fp32"]
    tfl = TFLiteDetector(path, input_spec=spec["input"], output_map=spec["outputs"], num_classes=3)
    ref = keras_det.detect_batch(images)
    got = [tfl(im) for im in images]
    assert sum(len(r) for r in ref) > 0
    shift = score_shift(got, ref, min_score=0.0)
    assert shift.match_rate > 0.9
    assert shift.mean_abs < 1e-3


def test_full_int8_is_fed_uint8_and_stays_close(model_and_variants):
    model_dir, variants, images = model_and_variants
    path, spec = variants["full_int8"]
    tfl = TFLiteDetector(path, input_spec=spec["input"], output_map=spec["outputs"], num_classes=3)
    assert tfl.input_dtype == np.uint8
    ref = KerasDetector(model_dir).detect_batch(images)
    shift = score_shift([tfl(im) for im in images], ref, min_score=0.0)
    assert shift.matched > 0 and shift.mean_abs < 0.1
