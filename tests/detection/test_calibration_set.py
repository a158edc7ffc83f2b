"""The int8 calibration set (edgeship/detection/convert.py select_calibration): drawn from the
calibration split, topped up from train when it is smaller than asked, seeded, and recorded."""
from __future__ import annotations

import shutil

import pytest

from edgeship.detection import convert


@pytest.fixture(scope="module")
def small_calibration(tmp_path_factory):
    from components.data.core import generate_dataset

    root = tmp_path_factory.mktemp("calib_data")
    generate_dataset(root, train=12, val=2, calibration=3, image_size=32, seed=2)
    return root


def test_a_small_calibration_split_is_topped_up_from_train(small_calibration):
    chosen = convert.select_calibration(str(small_calibration), (32, 32), 8, seed=0)
    record = chosen.record
    assert len(chosen.images) == 8 and record["images"] == 8 and record["requested"] == 8
    assert record["splits"] == {"calibration": 3, "train": 5}
    assert [i.split("/")[0] for i in record["image_ids"]] == ["calibration"] * 3 + ["train"] * 5
    assert "3 from split 'calibration' + 5 from split 'train'" in chosen.where
    again = convert.select_calibration(str(small_calibration), (32, 32), 8, seed=0)
    assert again.record["ids_sha256"] == record["ids_sha256"]  # deterministic for a seed
    other = convert.select_calibration(str(small_calibration), (32, 32), 8, seed=1)
    assert other.record["image_ids"][:3] == record["image_ids"][:3]  # the whole split either way
    assert other.record["ids_sha256"] != record["ids_sha256"]  # a different draw from train


def test_a_large_enough_split_is_sampled_without_train(small_calibration):
    chosen = convert.select_calibration(str(small_calibration), (16, 16), 2, seed=0)
    assert chosen.record["splits"] == {"calibration": 2}
    assert chosen.images[0].shape == (16, 16, 3)
    images, where = convert.load_calibration_images(str(small_calibration), (16, 16), 2)
    assert len(images) == 2 and "from split 'calibration'" in where


def test_a_missing_calibration_split_is_not_replaced_by_train(small_calibration, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_calibration, data)
    (data / "coco/annotations/calibration.json").unlink()
    chosen = convert.select_calibration(str(data), (32, 32), 8)
    assert chosen.images == [] and chosen.record["images"] == 0 and "calibration" in chosen.where


def test_given_examples_take_the_first_n():
    import numpy as np

    images = [np.full((8, 8, 3), i, np.uint8) for i in range(5)]
    chosen = convert.select_calibration(images, (8, 8), 3)
    assert [int(im[0, 0, 0]) for im in chosen.images] == [0, 1, 2]
    assert chosen.record["splits"] == {"given": 3}
