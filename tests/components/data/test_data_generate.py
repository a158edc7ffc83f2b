import json

import numpy as np
import pytest

from components.data import core
from edgeship.contracts import dataset as dataset_contract
from edgeship.detection import dataset as dataset_reader


def test_same_seed_same_fingerprint_and_bytes(small_dataset, tmp_path, SMALL):
    again = core.generate_dataset(tmp_path / "again", **SMALL)
    first = dataset_contract.read_dataset_info(small_dataset)
    assert again.fingerprint == first.fingerprint
    a = (small_dataset / "coco/images/val/000003.jpg").read_bytes()
    b = (tmp_path / "again/coco/images/val/000003.jpg").read_bytes()
    assert a == b


def test_other_seed_other_fingerprint(small_dataset, tmp_path, SMALL):
    other = core.generate_dataset(tmp_path / "other", **{**SMALL, "seed": SMALL["seed"] + 1})
    assert other.fingerprint != dataset_contract.read_dataset_info(small_dataset).fingerprint


def test_split_sizes_do_not_change_other_images(small_dataset, tmp_path, SMALL):
    bigger = tmp_path / "bigger"
    core.generate_dataset(bigger, **{**SMALL, "train": SMALL["train"] + 5})
    assert (bigger / "coco/images/val/000001.jpg").read_bytes() == \
        (small_dataset / "coco/images/val/000001.jpg").read_bytes()


def test_metadata_counts_match_the_annotations(small_dataset, SMALL):
    info = dataset_contract.read_dataset_info(small_dataset)
    assert [c["name"] for c in info.classes] == list(core.CLASSES)
    assert (small_dataset / "labels.txt").read_text().split() == list(core.CLASSES)
    for split in dataset_contract.SPLITS:
        coco = json.loads((small_dataset / f"coco/annotations/{split}.json").read_text())
        meta = info.splits[split]
        assert meta["images"] == len(coco["images"]) == SMALL[split]
        assert meta["objects"] == len(coco["annotations"])
        assert sum(meta["per_class"].values()) == meta["objects"]


def test_coco_and_tfrecord_readers_agree(small_dataset, SMALL):
    for split in dataset_contract.SPLITS:
        coco = dataset_reader.load_split(small_dataset, split, "coco")
        tfr = dataset_reader.load_split(small_dataset, split, "tfrecord")
        assert len(coco) == len(tfr) == SMALL[split]
        for a, b in zip(coco, tfr):
            assert a.image_id == b.image_id
            np.testing.assert_array_equal(a.labels, b.labels)
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
            np.testing.assert_array_equal(a.image, b.image)


def test_tf_dataset_yields_contract_shapes(small_dataset):
    from edgeship.base.tfcompat import tf

    ds = dataset_reader.tf_dataset(small_dataset, "val")
    item = next(iter(ds))
    assert item["image"].dtype == tf.uint8 and item["image"].shape == (64, 64, 3)
    assert item["boxes"].shape[1] == 4 and item["boxes"].dtype == tf.float32
    assert item["labels"].shape[0] == item["boxes"].shape[0]


def test_describe_carries_counts_and_fingerprint(small_dataset, SMALL):
    d = dataset_reader.describe(small_dataset)
    assert d["fingerprint"].startswith("sha256:") and len(d["fingerprint"]) == 71
    assert d["splits"]["train"]["images"] == SMALL["train"]


def test_regenerating_into_the_same_dir_leaves_no_stale_files(small_dataset, tmp_path, SMALL):
    out = tmp_path / "again"
    core.generate_dataset(out, **{**SMALL, "train": SMALL["train"] + 10})
    info = core.generate_dataset(out, **SMALL)  # smaller: the extra images must go
    assert len(list((out / "coco/images/train").iterdir())) == SMALL["train"]
    assert info.fingerprint == dataset_contract.read_dataset_info(small_dataset).fingerprint


def test_refuses_to_write_over_other_files(tmp_path, SMALL):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"is not empty and holds no dataset\.json"):
        core.generate_dataset(tmp_path, **SMALL)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_bad_sizes_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"val=0"):
        core.generate_dataset(tmp_path / "x", train=2, val=0, calibration=2)
    with pytest.raises(ValueError, match=r"image_size 16 is too small"):
        core.generate_dataset(tmp_path / "y", train=2, val=2, calibration=2, image_size=16)
