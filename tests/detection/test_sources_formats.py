"""Every format a user brings imports to the same kind of Dataset artifact, whose training
targets and evaluation agree with the source's boxes, and whose names and ids survive."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from edgeship.contracts import dataset as dataset_contract
from edgeship.detection import dataset as dataset_reader
from edgeship.detection.coco import Detections, coco_evaluate
from edgeship.detection.sources.importer import ImportOptions, import_dataset
from edgeship.detection.train_data import dataset_labels, load_training_data
from tests.detection import source_fixtures as fx

SPLITS = ("train", "val", "calibration")


def by_source(art: Path, split: str, fmt: str = "coco") -> dict[str, tuple[dict, object]]:
    """{source file: (artifact COCO image entry, Example)} of one split."""
    coco = json.loads((art / f"coco/annotations/{split}.json").read_text())
    examples = dataset_reader.load_split(art, split, fmt)
    return {img["source_file"]: (img, ex) for img, ex in zip(coco["images"], examples)}


def assert_same_kind_of_artifact(art: Path) -> dataset_contract.DatasetInfo:
    info = dataset_contract.read_dataset_info(art)
    for fmt in ("coco", "tfrecord"):
        dataset_reader.validate(art, fmt)
    for split in SPLITS:
        assert (art / f"coco/annotations/{split}.json").is_file()
        assert info.shards(split) and all((art / rel).is_file() for rel in info.shards(split))
        coco = dataset_reader.load_split(art, split, "coco")
        tfr = dataset_reader.load_split(art, split, "tfrecord")
        for a, b in zip(coco, tfr):
            np.testing.assert_array_equal(a.labels, b.labels)
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-5)
            np.testing.assert_array_equal(a.difficult, b.difficult)
            np.testing.assert_allclose(a.crowd_boxes, b.crowd_boxes, atol=1e-5)
    assert set(info.raw) >= {"classes", "splits", "fingerprint", "resize", "source", "report"}
    assert info.fingerprint == dataset_contract.fingerprint_dir(art)
    assert (art / "labels.txt").read_text().split("\n")[:-1] == info.class_names
    assert not list(art.parent.glob(f".{art.name}.importing-*"))
    return info


def perfect_detections(examples) -> list[Detections]:
    return [Detections(ex.boxes, ex.labels, np.linspace(0.9, 0.5, len(ex.labels)))
            for ex in examples]


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_artifact(tmp_path_factory):
    src = fx.write_coco(tmp_path_factory.mktemp("coco") / "src")
    art = tmp_path_factory.mktemp("coco_art") / "art"
    import_dataset(src, art)
    return src, art


def test_coco_ids_0_3_90_are_mapped_and_kept(coco_artifact):
    _, art = coco_artifact
    info = assert_same_kind_of_artifact(art)
    assert info.classes == [{"id": 1, "name": "person", "source_id": 0},
                            {"id": 2, "name": "car", "source_id": 3},
                            {"id": 3, "name": "toothbrush", "source_id": 90}]
    assert info.source["format"] == "coco"
    assert info.source["mapping"] == {"0": 1, "3": 2, "90": 3}
    assert [c["id"] for c in info.source["categories"]] == [0, 3, 90]
    # what train puts in the model config, hence the published labels.txt
    assert dataset_labels(str(art)) == ["person", "car", "toothbrush"]
    coco = json.loads((art / "coco/annotations/train.json").read_text())
    assert [c["source_id"] for c in coco["categories"]] == [0, 3, 90]


def test_coco_two_splits_given_calibration_carved(coco_artifact):
    _, art = coco_artifact
    info = dataset_contract.read_dataset_info(art)
    splits = info.source["splits"]
    assert splits["given"] == {"train": 9, "val": 6}
    assert splits["carved"] == {"calibration": {"from": "train", "fraction": 0.1, "images": 1}}
    assert info.splits["train"]["images"] == 8 and info.splits["val"]["images"] == 6


def test_coco_training_targets_agree_with_the_source_and_skip_crowd(coco_artifact):
    src, art = coco_artifact
    mapping = {0: 1, 3: 2, 90: 3}
    data = load_training_data(str(art), "train", (48, 64), 3)
    coco = json.loads((art / "coco/annotations/train.json").read_text())
    for k, img in enumerate(coco["images"]):
        i = int(Path(img["source_file"]).stem.split("_")[1])
        expected = fx.coco_objects(i)
        n = len(expected)
        assert (data.labels[k, n:] == 0).all(), "crowd region became a training target"
        np.testing.assert_array_equal(data.labels[k, :n], [mapping[c] for c, _ in expected])
        want = [[y / 48, x / 64, (y + h) / 48, (x + w) / 64] for _, (x, y, w, h) in expected]
        np.testing.assert_allclose(data.boxes[k, :n], want, atol=1e-6)
        assert img["source_file"].startswith("images/train/sub")      # nested folders found
    crowd = [a for a in coco["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and crowd[0]["bbox"] == [40, 2, 20, 10]
    examples = dataset_reader.load_split(art, "train")
    assert sum(len(e.crowd_labels) for e in examples) == 1
    assert dataset_contract.read_dataset_info(art).source["flags"]["iscrowd"] == 1


def test_coco_evaluation_agrees_and_pycocotools_ignores_the_crowd_region(coco_artifact):
    _, art = coco_artifact
    val = dataset_reader.load_split(art, "val")
    names = dataset_contract.read_dataset_info(art).class_names
    assert coco_evaluate(val, perfect_detections(val), names).map == pytest.approx(1.0)
    # on the artifact's own COCO JSON, a confident detection on the crowd region costs nothing
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(art / "coco/annotations/train.json"))
        dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                 "score": 1.0 if a["iscrowd"] else 0.9} for a in gt.dataset["annotations"]]
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_coco_missing_size_is_read_from_the_file(coco_artifact):
    _, art = coco_artifact
    everything = {}
    for split in SPLITS:
        everything.update(by_source(art, split))
    img, ex = everything["images/train/sub1/train_1.jpg"]
    assert (img["width"], img["height"]) == (64, 48) == (ex.image.shape[1], ex.image.shape[0])


# ---------------------------------------------------------------------------------------------


def test_voc_folder_imports_with_difficult_flags_and_image_sets(tmp_path):
    src = fx.write_voc(tmp_path / "voc")
    art = tmp_path / "art"
    import_dataset(src, art)
    info = assert_same_kind_of_artifact(art)
    assert info.class_names == ["cat", "dog"]
    assert info.source["mapping"] == {"cat": 1, "dog": 2} and info.classes[0]["source_id"] is None
    assert info.source["splits"]["given"] == {"train": 7, "val": 3}
    assert list(info.source["splits"]["carved"]) == ["calibration"]
    assert info.source["flags"]["difficult"] == 1
    rows = {**by_source(art, "train"), **by_source(art, "calibration")}
    img, ex = rows["JPEGImages/img_003.jpg"]
    assert ex.difficult.tolist() == [False, True]       # kept, flagged, still a target
    for rel, (img, ex) in {**rows, **by_source(art, "val")}.items():
        i = int(Path(rel).stem.split("_")[1])
        expected = fx.voc_objects(i)
        want = [[y0 / 50, x0 / 80, y1 / 50, x1 / 80] for _, (x0, y0, x1, y1), _ in expected]
        np.testing.assert_allclose(ex.boxes, want, atol=1e-6)
        assert [info.class_names[k - 1] for k in ex.labels] == [n for n, _, _ in expected]


def test_voc_without_image_sets_is_one_split(tmp_path):
    src = fx.write_voc(tmp_path / "voc", count=20, image_sets=False)
    info = import_dataset(src, tmp_path / "art", ImportOptions(val_fraction=0.2))
    assert info.source["splits"]["given"] == {"train": 20}
    carved = info.source["splits"]["carved"]
    assert carved["val"]["images"] == 4 and carved["calibration"]["images"] == 2
    assert info.splits["train"]["images"] == 14


# ---------------------------------------------------------------------------------------------


def test_tfod_records_and_label_map(tmp_path):
    src = fx.write_tfod(tmp_path / "tfod")
    art = tmp_path / "art"
    import_dataset(src, art, ImportOptions(resize="letterbox"))
    info = assert_same_kind_of_artifact(art)
    assert info.classes == [{"id": 1, "name": "apple", "source_id": 2},
                            {"id": 2, "name": "pear", "source_id": 7}]
    assert info.source["categories"][0] == {"id": 2, "name": "apple", "display_name": "Apple"}
    assert info.resize == {"policy": "letterbox", "input_size": [160, 160], "fill": 114}
    rows = {**by_source(art, "train"), **by_source(art, "calibration")}
    for rel, (img, ex) in rows.items():
        i = int(img["source_id"].split("_")[1])
        want = [[y0, x0, y1, x1] for _, (x0, y0, x1, y1) in fx.tfod_objects(i)]
        np.testing.assert_allclose(ex.boxes, want, atol=1e-6)
        assert ex.labels.tolist() == [{2: 1, 7: 2}[c] for c, _ in fx.tfod_objects(i)]
    val = dataset_reader.load_split(art, "val", "tfrecord")
    assert coco_evaluate(val, perfect_detections(val), info.class_names).map == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------


def test_images_of_every_kind(tmp_path):
    """Grayscale, RGBA, 16-bit and CMYK images, PNG and JPEG, wide and tall, EXIF-rotated (boxes
    drawn on the displayed photo, or on its stored pixels): each lands upright as RGB JPEG with
    its box over the object."""
    from PIL import Image

    src, zoo = fx.write_zoo(tmp_path / "zoo")
    art = tmp_path / "art"
    info = import_dataset(src, art, ImportOptions(val_fraction=0.12, calibration_fraction=0.12))
    assert_same_kind_of_artifact(art)
    rows = {rel: (img, ex, split) for split in SPLITS for rel, (img, ex) in by_source(art, split).items()}
    for entry in zoo:
        img, ex, split = rows[f"pics/{entry['name']}"]
        h, w = ex.image.shape[:2]
        assert (w, h) == ((64, 48) if "exif6" in entry["name"] else entry["size"]), entry["name"]
        x0, y0, x1, y1 = entry.get("displayed_box", entry["box"])
        np.testing.assert_allclose(ex.boxes[0], [y0 / h, x0 / w, y1 / h, x1 / w], atol=1e-6,
                                   err_msg=entry["name"])
        centre = ex.image[(y0 + y1) // 2, (x0 + x1) // 2].astype(int)
        assert np.abs(centre - entry["colour"]).max() <= 40, (entry["name"], centre, entry["colour"])
        with Image.open(art / "coco/images" / split / img["file_name"]) as stored:
            assert stored.format == "JPEG" and stored.getexif().get(0x0112, 1) == 1
    img, _, split = rows["pics/rgb.jpg"]    # nothing to change: kept byte for byte
    assert (art / "coco/images" / split / img["file_name"]).read_bytes() == \
        (src / "pics/rgb.jpg").read_bytes()
    images = info.raw["report"]["images"]
    assert images["exif_rotated"] == 2 and images["formats"] == {"JPEG": 6, "PNG": 3}
    assert {"L", "RGBA", "I;16", "CMYK", "RGB"} <= set(images["modes"])
    assert info.raw["report"]["warnings"]["by_kind"] == {"exif_raw_frame": 1}


def test_roboflow_export_layout_with_its_placeholder_category(tmp_path):
    """Roboflow's COCO export: {train,valid,test}/_annotations.coco.json with the images beside
    them, ids from 0 where 0 is the project's name (no annotations, supercategory of the rest)."""
    src = tmp_path / "roboflow"
    cats = [{"id": 0, "name": "fruit", "supercategory": "none"},
            {"id": 1, "name": "apple", "supercategory": "fruit"},
            {"id": 2, "name": "pear", "supercategory": "fruit"}]
    for folder, count in (("train", 6), ("valid", 2), ("test", 2)):
        images, anns = [], []
        for i in range(count):
            name = f"{folder}_{i}_jpg.rf.{i:04x}.jpg"
            rect = (5 + i, 5, 25 + i, 20, (200, 30, 30))
            (src / folder).mkdir(parents=True, exist_ok=True)
            (src / folder / name).write_bytes(fx.encode(fx.picture(40, 30, [rect])))
            images.append({"id": i, "file_name": name, "width": 40, "height": 30})
            anns.append({"id": i, "image_id": i, "category_id": 1 + i % 2,
                         "bbox": [5 + i, 5, 20, 15], "area": 300, "iscrowd": 0})
        (src / folder / "_annotations.coco.json").write_text(json.dumps(
            {"images": images, "annotations": anns, "categories": cats}))
    info = import_dataset(src, tmp_path / "art")
    assert info.classes == [{"id": 1, "name": "apple", "source_id": 1},
                            {"id": 2, "name": "pear", "source_id": 2}]
    assert info.source["splits"]["given"] == {"train": 6, "val": 2, "test": 2}
    assert list(info.splits) == ["train", "val", "calibration", "test"]
    assert info.raw["report"]["warnings"]["by_kind"] == {"placeholder_category": 1}
    assert_same_kind_of_artifact(tmp_path / "art")
    assert len(dataset_reader.load_split(tmp_path / "art", "test")) == 2


def test_edgeship_evaluation_ignores_crowd_regions_and_difficult_objects(coco_artifact):
    """coco_evaluate (what evaluate and the gate use) treats crowd regions and VOC 'difficult'
    objects as pycocotools ignore regions: a detection there is no false positive, and a missed
    one is no miss."""
    _, art = coco_artifact
    train = dataset_reader.load_split(art, "train")
    names = dataset_contract.read_dataset_info(art).class_names
    with_crowd = [ex for ex in train if len(ex.crowd_boxes)]
    assert with_crowd, "the fixture has a crowd region"
    perfect = perfect_detections(with_crowd)
    on_crowd = [Detections(np.concatenate([d.boxes, ex.crowd_boxes]).astype(np.float32),
                           np.concatenate([d.labels, ex.crowd_labels]).astype(np.int32),
                           np.concatenate([d.scores, np.ones(len(ex.crowd_boxes), np.float32)]))
                for d, ex in zip(perfect, with_crowd)]
    result = coco_evaluate(with_crowd, on_crowd, names)
    assert result.map == pytest.approx(1.0) and result.objects == sum(len(ex.labels) for ex in with_crowd)
    # a difficult object missed costs nothing; the same object not flagged difficult does
    ex = with_crowd[0]
    ex.difficult = np.zeros(len(ex.labels), bool)
    ex.difficult[0] = True
    dropped = [Detections(d.boxes[1:], d.labels[1:], d.scores[1:]) for d in perfect[:1]]
    assert coco_evaluate([ex], dropped, names).map == pytest.approx(1.0)
    ex.difficult[0] = False
    assert coco_evaluate([ex], dropped, names).map < 1.0
