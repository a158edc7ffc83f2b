"""Expectations on the embedded data itself (at a size where statistics mean something)."""
import numpy as np
import pytest

from components.data import core


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    out = tmp_path_factory.mktemp("medium")
    core.generate_dataset(out, seed=0, train=120, val=60, calibration=40, image_size=96)
    return out


def test_every_class_in_every_split(medium):
    info = core.read_dataset_info(medium)
    for split in core.SPLITS:
        assert all(n > 0 for n in info.splits[split]["per_class"].values()), (split, info.splits[split])


def test_boxes_valid_sizes_varied_and_several_objects_per_image(medium):
    examples = core.load_split(medium, "train")
    boxes = np.concatenate([e.boxes for e in examples])
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert sides.min() < 0.2 and sides.max() > 0.35       # small and large objects
    counts = [len(e.labels) for e in examples]
    assert max(counts) >= 4 and min(counts) >= 1


def test_images_vary_in_brightness(medium):
    means = [e.image.mean() for e in core.load_split(medium, "val")]
    assert np.ptp(means) > 40  # lighting is varied, not one exposure
