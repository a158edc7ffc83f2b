"""COCO mAP (pycocotools) over in-memory examples: perfect detections score 1.0, damage lowers it."""
import numpy as np
import pytest

from edgeship.detection.coco import Detections, coco_evaluate
from tests.support.evaluate_data import CLASSES, make_example


def perfect(examples):
    return [Detections(ex.boxes.copy(), ex.labels.copy(), np.ones(len(ex.labels), np.float32)) for ex in examples]


def test_detections_equal_to_ground_truth_give_map_1(examples):
    result = coco_evaluate(examples, perfect(examples), CLASSES)
    assert result.map == pytest.approx(1.0)
    assert result.map50 == pytest.approx(1.0)
    assert result.per_class_ap == pytest.approx({"circle": 1.0, "square": 1.0, "triangle": 1.0})
    assert result.images == 6 and result.objects == 10 and result.detections == 10


def test_shifted_boxes_score_lower(examples):
    dets = []
    for ex in examples:
        boxes = ex.boxes.copy()
        height = boxes[:, 2] - boxes[:, 0]
        boxes[:, [0, 2]] += 0.15 * height[:, None]  # IoU ~0.74: counts at .5, not at high thresholds
        dets.append(Detections(np.clip(boxes, 0, 1), ex.labels, np.ones(len(ex.labels))))
    result = coco_evaluate(examples, dets, CLASSES)
    assert result.map < 0.8
    assert result.map50 == pytest.approx(1.0)


def test_missing_detections_score_lower(examples):
    dets = perfect(examples)
    dets[2] = Detections.empty()  # 3 of 10 objects never detected
    result = coco_evaluate(examples, dets, CLASSES)
    assert result.map < 0.9
    assert result.map > 0.3


def test_wrong_class_scores_lower(examples):
    dets = perfect(examples)
    dets[3] = Detections(examples[3].boxes, [1], np.ones(1))  # a triangle called a circle
    result = coco_evaluate(examples, dets, CLASSES)
    assert result.map < 1.0
    assert result.per_class_ap["triangle"] < 1.0  # missed
    assert result.per_class_ap["circle"] < 1.0  # a false positive at score 1.0
    assert result.per_class_ap["square"] == pytest.approx(1.0)


def test_low_scored_false_positives_outranked_by_true_ones_keep_map(examples):
    dets = []
    for ex in perfect(examples):
        fp_box = np.array([[0.0, 0.0, 0.05, 0.05]], np.float32)
        dets.append(Detections(np.concatenate([ex.boxes, fp_box]), np.concatenate([ex.labels, [1]]),
                               np.concatenate([ex.scores, [0.01]])))
    assert coco_evaluate(examples, dets, CLASSES).map == pytest.approx(1.0)


def test_no_detections_at_all_is_zero(examples):
    result = coco_evaluate(examples, [Detections.empty() for _ in examples], CLASSES)
    assert result.map == 0.0 and result.map50 == 0.0


def test_empty_val_set_is_a_clear_error():
    with pytest.raises(ValueError, match="no images"):
        coco_evaluate([], [], CLASSES)


def test_val_set_without_objects_is_a_clear_error():
    ex = [make_example(0, np.zeros((0, 4)), [])]
    with pytest.raises(ValueError, match="no objects"):
        coco_evaluate(ex, [Detections.empty()], CLASSES)


def test_label_outside_label_map_names_image_and_label(examples):
    bad = examples[:2] + [make_example(9, [[0.1, 0.1, 0.2, 0.2]], [7])]
    with pytest.raises(ValueError, match=r"'000009'.*\[7\].*outside the label map"):
        coco_evaluate(bad, perfect(bad), CLASSES)


def test_detection_class_outside_label_map_is_an_error(examples):
    dets = perfect(examples)
    dets[0] = Detections(examples[0].boxes, [4], [1.0])
    with pytest.raises(ValueError, match="class id 4"):
        coco_evaluate(examples, dets, CLASSES)


def test_mismatched_lengths_and_bad_boxes(examples):
    with pytest.raises(ValueError, match="5 detection sets for 6 images"):
        coco_evaluate(examples, perfect(examples)[:5], CLASSES)
    bad = [make_example(0, [[0.5, 0.1, 0.2, 0.4]], [1])]  # ymax < ymin
    with pytest.raises(ValueError, match="not normalized"):
        coco_evaluate(bad, perfect(bad), CLASSES)
