"""Each kind of bad input gets an error naming the file or record and the problem."""
import json

import pytest

from edgeship.contracts import dataset as dataset_contract
from edgeship.detection import dataset as dataset_reader


def _edit_coco(root, split, fn):
    path = root / f"coco/annotations/{split}.json"
    coco = json.loads(path.read_text())
    fn(coco)
    path.write_text(json.dumps(coco))


def test_missing_image(dataset_copy):
    (dataset_copy / "coco/images/val/000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"coco/images/val/000002\.jpg"):
        dataset_reader.load_split(dataset_copy, "val")


def test_corrupted_jpeg(dataset_copy):
    (dataset_copy / "coco/images/val/000001.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(ValueError, match=r"000001\.jpg: cannot decode image"):
        dataset_reader.load_split(dataset_copy, "val")


def test_inverted_box(dataset_copy):
    def invert(coco):
        coco["annotations"][0]["bbox"][2] = -5.0
    _edit_coco(dataset_copy, "val", invert)
    with pytest.raises(ValueError, match=r"in coco/images/val/\d{6}\.jpg has xmax < xmin"):
        dataset_reader.load_split(dataset_copy, "val")


def test_box_outside_image(dataset_copy):
    def push(coco):
        coco["annotations"][0]["bbox"][0] = 500.0
    _edit_coco(dataset_copy, "val", push)
    with pytest.raises(ValueError, match=r"lies outside the 64x64 image"):
        dataset_reader.load_split(dataset_copy, "val")


def test_unknown_class_id(dataset_copy):
    def relabel(coco):
        coco["annotations"][0]["category_id"] = 9
    _edit_coco(dataset_copy, "val", relabel)
    with pytest.raises(ValueError, match=r"class id 9 in coco/images/val/\d{6}\.jpg is not in the label map \(1\.\.5\)"):
        dataset_reader.load_split(dataset_copy, "val")


def test_empty_split(dataset_copy):
    def empty(coco):
        coco["images"], coco["annotations"] = [], []
    _edit_coco(dataset_copy, "calibration", empty)
    with pytest.raises(ValueError, match=r"split 'calibration' of .* is empty"):
        dataset_reader.load_split(dataset_copy, "calibration")


def test_truncated_tfrecord(dataset_copy):
    path = dataset_copy / "tfrecord/val-00000-of-00001.tfrecord"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"val-00000-of-00001\.tfrecord: truncated record"):
        dataset_reader.load_split(dataset_copy, "val", "tfrecord")


def test_tfrecord_unknown_class_names_the_record(dataset_copy, monkeypatch):
    info = dataset_contract.read_dataset_info(dataset_copy)
    raw = info.raw
    raw["classes"] = raw["classes"][:1]  # label map now disagrees with the data
    (dataset_copy / "dataset.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"val-00000-of-00001\.tfrecord \(\d{6}\.jpg\).*not in the label map \(1\.\.1\)"):
        dataset_reader.load_split(dataset_copy, "val", "tfrecord")


def test_unknown_format(small_dataset):
    with pytest.raises(ValueError, match="unknown dataset format 'yolo'"):
        dataset_reader.load_split(small_dataset, "val", "yolo")


def test_missing_dataset_json(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset\.json"):
        dataset_reader.load_split(tmp_path, "val")


def test_corrupt_tfrecord_names_the_record(dataset_copy):
    path = dataset_copy / "tfrecord/val-00000-of-00001.tfrecord"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside some record's data
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"val-00000-of-00001\.tfrecord: corrupt record \d+ at byte \d+ \(data checksum"):
        dataset_reader.load_split(dataset_copy, "val", "tfrecord")


def test_annotation_for_an_unknown_image(dataset_copy):
    def orphan(coco):
        coco["annotations"][0]["image_id"] = 999
    _edit_coco(dataset_copy, "val", orphan)
    with pytest.raises(ValueError, match=r"annotation 1 in .*val\.json refers to image id 999"):
        dataset_reader.load_split(dataset_copy, "val")


def test_image_size_disagrees_with_annotations(dataset_copy):
    def resize(coco):
        coco["images"][1]["width"] = 65
    _edit_coco(dataset_copy, "val", resize)
    with pytest.raises(ValueError, match=r"coco/images/val/000001\.jpg is 64x64 but .* says 65x64"):
        dataset_reader.load_split(dataset_copy, "val")


def test_unknown_split_lists_the_real_ones(small_dataset):
    with pytest.raises(ValueError, match=r"no split 'test' in .*lists \['calibration', 'train', 'val'\]"):
        dataset_reader.load_split(small_dataset, "test")
