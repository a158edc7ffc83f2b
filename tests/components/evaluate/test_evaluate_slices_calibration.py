"""Robustness slices change pixels as intended and keep the ground truth; calibration figures."""
import numpy as np
import pytest

from components.evaluate.calibration import expected_calibration_error, iou_matrix, score_shift
from components.evaluate.robustness import SLICES, make_slice, make_slices
from edgeship.detection.coco import Detections


def sharpness(image):
    x = image.astype(np.float32).mean(axis=2)
    return np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean()


def test_slices_keep_ids_boxes_and_labels(examples):
    slices = make_slices(examples)
    assert set(slices) == set(SLICES)
    for name, sliced in slices.items():
        assert len(sliced) == len(examples)
        for ex, new in zip(examples, sliced):
            assert new.image_id == ex.image_id
            np.testing.assert_array_equal(new.boxes, ex.boxes)
            np.testing.assert_array_equal(new.labels, ex.labels)
            assert new.image.dtype == np.uint8 and new.image.shape == ex.image.shape
            assert not np.array_equal(new.image, ex.image), name


def test_dark_is_darker_and_bright_is_brighter(examples):
    for ex, dark, bright in zip(examples, make_slice(examples, "dark"), make_slice(examples, "bright")):
        assert np.all(dark.image <= ex.image)
        assert dark.image.mean() < 0.6 * ex.image.mean()
        assert np.all(bright.image >= ex.image)
        assert bright.image.mean() > 1.2 * ex.image.mean()


def test_blur_removes_detail(examples):
    for ex, blurred in zip(examples, make_slice(examples, "blurred")):
        assert sharpness(blurred.image) < 0.5 * sharpness(ex.image)
        assert blurred.image.mean() == pytest.approx(ex.image.mean(), abs=2)


def test_occlusion_covers_part_of_each_object_only_inside_boxes(examples):
    occluded = make_slice(examples, "occluded", seed=3)
    for ex, occ in zip(examples, occluded):
        changed = np.any(occ.image != ex.image, axis=2)
        h, w = changed.shape
        inside = np.zeros_like(changed)
        for ymin, xmin, ymax, xmax in ex.boxes:
            box = np.zeros_like(changed)
            box[int(np.floor(ymin * h)):int(np.ceil(ymax * h)), int(np.floor(xmin * w)):int(np.ceil(xmax * w))] = True
            inside |= box
            covered = (changed & box).sum() / box.sum()
            assert 0.1 < covered < 0.95  # part of the object, not all of it
        assert not np.any(changed & ~inside)
    again = make_slice(examples, "occluded", seed=3)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(occluded, again))  # deterministic
    other = make_slice(examples, "occluded", seed=4)
    assert not all(np.array_equal(a.image, b.image) for a, b in zip(occluded, other))


def test_unknown_slice_is_named(examples):
    with pytest.raises(ValueError, match="'foggy'"):
        make_slice(examples, "foggy")


def test_iou_matrix():
    a = np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.5]], np.float32)
    b = np.array([[0, 0, 0.5, 1], [2, 2, 3, 3]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[0.5, 0.0], [0.5, 0.0]])


def test_ece_is_zero_when_confidence_matches_hit_rate(examples):
    # every object detected with score 1.0 → hit rate 1.0 in the top bin
    perfect = [Detections(ex.boxes, ex.labels, np.ones(len(ex.labels))) for ex in examples]
    assert expected_calibration_error(examples, perfect).ece == pytest.approx(0.0)
    # the same hits at score 0.6 → overconfidence gap 0.4 under-confident
    timid = [Detections(ex.boxes, ex.labels, np.full(len(ex.labels), 0.6)) for ex in examples]
    cal = expected_calibration_error(examples, timid)
    assert cal.ece == pytest.approx(0.4) and cal.hit_rate == 1.0 and cal.detections == 10


def test_ece_counts_misses():
    from tests.support.evaluate_data import make_example

    ex = [make_example(0, [[0.1, 0.1, 0.5, 0.5]], [1])]
    # one hit and one miss (wrong place), both at 0.9 → hit rate 0.5, ECE 0.4
    det = [Detections([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [1, 1], [0.9, 0.9])]
    cal = expected_calibration_error(ex, det)
    assert cal.hit_rate == 0.5 and cal.ece == pytest.approx(0.4)
    assert expected_calibration_error(ex, [Detections.empty()]).detections == 0


def test_score_shift_of_matched_detections(examples):
    ref = [Detections(ex.boxes, ex.labels, np.full(len(ex.labels), 0.8)) for ex in examples]
    lower = [Detections(ex.boxes, ex.labels, np.full(len(ex.labels), 0.7)) for ex in examples]
    shift = score_shift(lower, ref)
    assert shift.mean == pytest.approx(-0.1) and shift.mean_abs == pytest.approx(0.1)
    assert shift.matched == 10 and shift.match_rate == 1.0
    # wrong classes do not match
    other = [Detections(ex.boxes, ex.labels % 3 + 1, np.full(len(ex.labels), 0.7)) for ex in examples]
    assert score_shift(other, ref).matched == 0
