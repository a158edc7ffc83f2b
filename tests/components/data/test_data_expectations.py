"""Expectations on the embedded data itself (at a size where statistics mean something)."""
import numpy as np
import pytest

from components.data import core
from edgeship.contracts import dataset as dataset_contract
from edgeship.detection import dataset as dataset_reader


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    out = tmp_path_factory.mktemp("medium")
    core.generate_dataset(out, seed=0, train=120, val=60, calibration=40, image_size=96)
    return out


def test_every_class_in_every_split(medium):
    info = dataset_contract.read_dataset_info(medium)
    for split in dataset_contract.SPLITS:
        assert all(n > 0 for n in info.splits[split]["per_class"].values()), (split, info.splits[split])


def test_boxes_valid_sizes_varied_and_several_objects_per_image(medium):
    examples = dataset_reader.load_split(medium, "train")
    boxes = np.concatenate([e.boxes for e in examples])
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert sides.min() < 0.2 and sides.max() > 0.35       # small and large objects
    counts = [len(e.labels) for e in examples]
    assert max(counts) >= 4 and min(counts) >= 1


def test_images_vary_in_brightness(medium):
    means = [e.image.mean() for e in dataset_reader.load_split(medium, "val")]
    assert np.ptp(means) > 40  # lighting is varied, not one exposure


def test_objects_stay_identifiable(medium):
    """No object is fully covered: every one keeps most of its area visible, boxes overlap little."""
    import json

    from components.data.generate import GeneratorConfig, _iou

    cfg = GeneratorConfig()
    for split in dataset_contract.SPLITS:
        coco = json.loads((medium / f"coco/annotations/{split}.json").read_text())
        by_image = {}
        for a in coco["annotations"]:
            assert a["visible"] >= cfg.min_visible, a
            by_image.setdefault(a["image_id"], []).append(a["bbox"])
        for boxes in by_image.values():
            xyxy = [(x, y, x + w, y + h) for x, y, w, h in boxes]
            for i in range(len(xyxy)):
                for j in range(i + 1, len(xyxy)):
                    assert _iou(xyxy[i], xyxy[j]) <= cfg.max_overlap_iou


def test_occlusion_and_overlap_actually_happen(medium):
    import json

    coco = json.loads((medium / "coco/annotations/train.json").read_text())
    visible = np.array([a["visible"] for a in coco["annotations"]])
    assert (visible < 0.95).mean() > 0.05  # some objects are partly hidden
    assert (visible > 0.99).mean() > 0.5   # most are not


def test_objects_stand_out_from_the_background(medium):
    """An object's centre differs in colour from the strip of background just outside its box."""
    examples = dataset_reader.load_split(medium, "val")
    diffs = []
    for ex in examples:
        h, w = ex.image.shape[:2]
        img = ex.image.astype(np.float32)
        for y0, x0, y1, x1 in (ex.boxes * [h, w, h, w]).astype(int):
            cy, cx, ry, rx = (y0 + y1) // 2, (x0 + x1) // 2, max(1, (y1 - y0) // 8), max(1, (x1 - x0) // 8)
            centre = img[cy - ry:cy + ry + 1, cx - rx:cx + rx + 1].reshape(-1, 3).mean(0)
            ring = np.zeros((h, w), bool)
            ring[max(0, y0 - 3):y1 + 3, max(0, x0 - 3):x1 + 3] = True
            ring[y0:y1, x0:x1] = False
            if ring.any():
                diffs.append(np.linalg.norm(centre - img[ring].mean(0)))
    assert np.median(diffs) > 40
