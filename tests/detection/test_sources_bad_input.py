"""Bad input at import: each gets an error or a warning naming the file and the annotation or
record, and a failed import leaves nothing that looks like a dataset."""
from __future__ import annotations

import json

import pytest

from edgeship.contracts import dataset as dataset_contract
from edgeship.detection.sources import writer
from edgeship.detection.sources.importer import ImportOptions, import_dataset
from edgeship.detection.sources.records import SourceError
from edgeship.detection.sources.tfod import parse_label_map
from tests.detection import source_fixtures as fx

STRICT = ImportOptions(strict=True)


@pytest.fixture
def coco_src(tmp_path):
    return fx.write_coco(tmp_path / "src")


def _train_json(src):
    return src / "annotations/instances_train.json"


def _nothing_at(out):
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))


def test_unknown_category_id_names_the_file_and_annotation(coco_src, tmp_path):
    fx.edit_json(_train_json(coco_src), lambda d: d["annotations"][2].update(category_id=5))
    with pytest.raises(SourceError, match=r"instances_train\.json annotation 121 .*unknown category "
                                          r"id 5; the categories are \[0, 3, 90\]"):
        import_dataset(coco_src, tmp_path / "out")
    _nothing_at(tmp_path / "out")


def test_box_outside_the_image_is_clipped_with_a_warning_or_refused_when_strict(coco_src, tmp_path):
    fx.edit_json(_train_json(coco_src), lambda d: d["annotations"][0].update(bbox=[50, 40, 30, 20]))
    info = import_dataset(coco_src, tmp_path / "out")
    warnings = info.raw["report"]["warnings"]
    assert warnings["by_kind"] == {"box_clipped": 1}
    assert "instances_train.json annotation 107 (image images/train/sub0/train_0.jpg): box " \
           "[50, 40, 80, 60] (x0, y0, x1, y1) extends outside the 64x48 image: clipped to " \
           "[50, 40, 64, 48]" in warnings["messages"][0]
    coco = json.loads((tmp_path / "out/coco/annotations/train.json").read_text())
    assert [50, 40, 14, 8] in [a["bbox"] for a in coco["annotations"]] + \
        [a["bbox"] for a in json.loads((tmp_path / "out/coco/annotations/calibration.json")
                                       .read_text())["annotations"]]
    with pytest.raises(SourceError, match=r"annotation 107 .*extends outside the 64x48 image.*"
                                          r"refused under --strict"):
        import_dataset(coco_src, tmp_path / "strict", STRICT)
    _nothing_at(tmp_path / "strict")


@pytest.mark.parametrize("bbox, kind, words", [
    ([10, 10, 0, 5], "box_zero_area", "has zero area: dropped"),
    ([10, 10, -4, 5], "box_inverted", "is inverted or not finite: dropped"),
    ([70, 50, 5, 5], "box_outside", "lies outside the 64x48 image: dropped"),
])
def test_degenerate_boxes_are_dropped_with_a_warning_or_refused(coco_src, tmp_path, bbox, kind, words):
    fx.edit_json(_train_json(coco_src), lambda d: d["annotations"][0].update(bbox=bbox))
    info = import_dataset(coco_src, tmp_path / "out")
    assert info.raw["report"]["warnings"]["by_kind"] == {kind: 1}
    assert "annotation 107" in info.raw["report"]["warnings"]["messages"][0]
    assert words in info.raw["report"]["warnings"]["messages"][0]
    with pytest.raises(SourceError, match=r"annotation 107 .*refused under --strict"):
        import_dataset(coco_src, tmp_path / "strict", STRICT)


def test_missing_image_names_the_file_and_the_image_id(coco_src, tmp_path):
    (coco_src / "images/train/sub1/train_3.jpg").unlink()
    with pytest.raises(SourceError, match=r"instances_train\.json image 1003 \(sub1/train_3\.jpg\): "
                                          r"image file 'sub1/train_3\.jpg' is missing"):
        import_dataset(coco_src, tmp_path / "out")
    _nothing_at(tmp_path / "out")


def test_unreadable_image_names_the_file(coco_src, tmp_path):
    (coco_src / "images/val/sub0/val_2.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(SourceError, match=r"images/val/sub0/val_2\.png: cannot decode image .*"
                                          r"instances_val\.json image 5002"):
        import_dataset(coco_src, tmp_path / "out")
    _nothing_at(tmp_path / "out")


def test_duplicate_image_id(coco_src, tmp_path):
    fx.edit_json(_train_json(coco_src), lambda d: d["images"][4].update(id=1002))
    with pytest.raises(SourceError, match=r"instances_train\.json: duplicate image id 1002 "
                                          r"\(images\[4\], file 'sub0/train_4\.jpg'"):
        import_dataset(coco_src, tmp_path / "out")


def test_annotation_for_an_unknown_image(coco_src, tmp_path):
    fx.edit_json(_train_json(coco_src), lambda d: d["annotations"][0].update(image_id=77))
    with pytest.raises(SourceError, match=r"annotation 107 refers to image id 77"):
        import_dataset(coco_src, tmp_path / "out")


def test_declared_size_that_fits_no_reading_of_the_file(coco_src, tmp_path):
    fx.edit_json(_train_json(coco_src), lambda d: d["images"][0].update(width=65))
    with pytest.raises(SourceError, match=r"image 1000 \(sub0/train_0\.jpg\): says 65x48 but its "
                                          r"image .* is 64x48"):
        import_dataset(coco_src, tmp_path / "out")


def test_one_id_two_names_across_files(coco_src, tmp_path):
    path = coco_src / "annotations/instances_val.json"
    fx.edit_json(path, lambda d: d["categories"][1].update(name="truck"))
    with pytest.raises(SourceError, match=r"category id 3 is 'car' in .*instances_train\.json but "
                                          r"'truck' in .*instances_val\.json"):
        import_dataset(coco_src, tmp_path / "out")


def test_voc_xml_without_a_size_warns_and_reads_the_image(tmp_path):
    src = fx.write_voc(tmp_path / "voc", sizeless=(2,))
    info = import_dataset(src, tmp_path / "out")
    warnings = info.raw["report"]["warnings"]
    assert warnings["by_kind"] == {"voc_no_size": 1}
    assert "Annotations/img_002.xml: no <size>" in warnings["messages"][0]
    with pytest.raises(SourceError, match=r"img_002\.xml: no <size>.*refused under --strict"):
        import_dataset(src, tmp_path / "strict", STRICT)


def test_voc_broken_xml_names_the_line(tmp_path):
    src = fx.write_voc(tmp_path / "voc")
    (src / "Annotations/img_004.xml").write_text("<annotation>\n<filename>x.jpg</filename>\n<object>")
    with pytest.raises(SourceError, match=r"img_004\.xml line 3 column \d+: not well-formed XML"):
        import_dataset(src, tmp_path / "out")


def test_voc_object_without_a_box(tmp_path):
    src = fx.write_voc(tmp_path / "voc")
    path = src / "Annotations/img_001.xml"
    path.write_text(path.read_text().replace("<xmax>31</xmax>", "<xmax>wide</xmax>"))
    with pytest.raises(SourceError, match=r"img_001\.xml object 0 \('dog'\): <xmax> is 'wide'"):
        import_dataset(src, tmp_path / "out")


def test_tfod_label_outside_the_label_map(tmp_path):
    bad = fx.tfod_record(4, labels=[7, 9], texts=[b"pear", b"plum"])
    src = fx.write_tfod(tmp_path / "tfod", records={("train", 4): bad})
    with pytest.raises(SourceError, match=r"train\.record record 4 \(fruit_4\.jpeg\) object 1: "
                                          r"label 9 is not in the label map .*label_map\.pbtxt "
                                          r"\(ids \[2, 7\]\): the label map disagrees"):
        import_dataset(src, tmp_path / "out")


def test_tfod_text_that_disagrees_with_the_label_map(tmp_path):
    bad = fx.tfod_record(2, texts=[b"pear", b"banana"])
    src = fx.write_tfod(tmp_path / "tfod", records={("val", 1): bad})
    with pytest.raises(SourceError, match=r"val\.record record 1 .* object 1: class/text 'banana' "
                                          r"but .*label_map\.pbtxt names id 2 'apple'"):
        import_dataset(src, tmp_path / "out")


@pytest.mark.parametrize("text, words", [
    ("item {\n  id: 1\n  name: 'a'\n}\nitem {\n  id: 1\n  name: 'b'\n}\n",
     r"line 5: id 1 already used at line 1"),
    ("item {\n  id: 1\n  name: 'a\n}\n", r"line 3: unexpected \"'\""),
    ("item {\n  id: 1\n}\n", r"line 1: item needs an id and a name"),
    ("item {\n  id: x\n  name: 'a'\n}\n", r"line 2: id 'x' is not an integer"),
    ("items {\n  id: 1\n}\n", r"line 1: expected 'item \{', got 'items'"),
    ("item {\n  id: 1\n  name: 'a'\n", r"line 1: item \{ is never closed"),
    ("item {\n  id 1\n  name: 'a'\n}\n", r"line 2: expected 'id: value'"),
])
def test_label_map_errors_name_the_line(text, words):
    with pytest.raises(SourceError, match=r"map\.pbtxt " + words if words.startswith("line") else words):
        parse_label_map(text, "map.pbtxt")


def test_label_map_reads_what_users_write():
    cats = parse_label_map(fx.LABEL_MAP + "item { id: 0 name: 'background' }\n", "m")
    assert [(c.source_id, c.name, c.display_name) for c in cats] == [(2, "apple", "Apple"),
                                                                      (7, "pear", None)]


def test_split_empty_after_carving(tmp_path):
    src = fx.write_voc(tmp_path / "voc", count=3, image_sets=False)
    with pytest.raises(SourceError, match=r"split 'val' is empty after carving 0\.15 of 3 train "
                                          r"images; give a val split or raise the fraction"):
        import_dataset(src, tmp_path / "out")
    _nothing_at(tmp_path / "out")


def test_no_known_format(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/readme.txt").write_text("photos elsewhere")
    with pytest.raises(SourceError, match=r"found no COCO detection JSON, Pascal VOC XML or "
                                          r"TFRecords .* among the 1 files"):
        import_dataset(tmp_path / "src", tmp_path / "out")


def test_two_formats_need_format(coco_src, tmp_path):
    fx.write_voc(coco_src / "voc")
    with pytest.raises(SourceError, match=r"holds several formats \(coco, voc\): pass --format"):
        import_dataset(coco_src, tmp_path / "out")
    info = import_dataset(coco_src, tmp_path / "out", ImportOptions(format="coco"))
    assert info.source["format"] == "coco"


def test_an_artifact_is_not_imported_again(coco_src, tmp_path):
    import_dataset(coco_src, tmp_path / "art")
    with pytest.raises(SourceError, match=r"already an edgeship Dataset artifact"):
        import_dataset(tmp_path / "art", tmp_path / "out")


def test_refuses_to_write_over_other_files(coco_src, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/mine.txt").write_text("keep")
    with pytest.raises(ValueError, match=r"is not empty and holds no dataset\.json"):
        import_dataset(coco_src, tmp_path / "out")
    assert (tmp_path / "out/mine.txt").read_text() == "keep"


def test_a_failure_while_writing_leaves_the_previous_dataset_whole(coco_src, tmp_path, monkeypatch):
    out = tmp_path / "out"
    before = import_dataset(coco_src, out).fingerprint
    real = writer.write_split

    def fail_on_val(root, split, *args, **kwargs):
        if split == "val":
            raise OSError("disk full")
        return real(root, split, *args, **kwargs)

    monkeypatch.setattr(writer, "write_split", fail_on_val)
    with pytest.raises(OSError, match="disk full"):
        import_dataset(coco_src, out, ImportOptions(seed=5))
    assert dataset_contract.read_dataset_info(out).fingerprint == before
    assert dataset_contract.fingerprint_dir(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_unreadable_gcs_source_names_the_uri(tmp_path, monkeypatch):
    from google.api_core import exceptions

    from edgeship.base import storage

    def forbidden(uri):
        raise exceptions.Forbidden("caller does not have storage.objects.list access")

    monkeypatch.setattr(storage, "list_files", forbidden)
    with pytest.raises(FileNotFoundError, match=r"cannot read the gs:// source gs://bucket/photos: "
                                                r"Forbidden: 403 caller does not have"):
        import_dataset("gs://bucket/photos", tmp_path / "out")
    _nothing_at(tmp_path / "out")
