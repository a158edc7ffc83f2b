"""Properties of the import's pieces (hypothesis): box checking and clipping, COCO id mapping,
stratified carving, the label-map parser, EXIF orientation and the resize policies."""
from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgeship.detection.sources.boxes import clip_box
from edgeship.detection.sources.images import (
    boxes_from_input,
    boxes_to_input,
    orient_boxes,
    resize_image,
    resize_transform,
)
from edgeship.detection.sources.importer import ImportOptions, import_dataset
from edgeship.detection.sources.splits import carve
from edgeship.detection.sources.tfod import parse_label_map
from tests.detection import source_fixtures as fx

coord = st.floats(min_value=-200, max_value=400, allow_nan=False, allow_infinity=False)
side = st.integers(min_value=1, max_value=300)


@given(x0=coord, y0=coord, x1=coord, y1=coord, w=side, h=side)
def test_clip_box_keeps_only_real_boxes_inside_the_image(x0, y0, x1, y1, w, h):
    kept, problem = clip_box((x0, y0, x1, y1), w, h)
    if x1 < x0 or y1 < y0:
        assert (kept, problem) == (None, "inverted")
        return
    if x1 == x0 or y1 == y0:
        assert (kept, problem) == (None, "zero_area")
        return
    inter_w = min(x1, w) - max(x0, 0)
    inter_h = min(y1, h) - max(y0, 0)
    if inter_w <= 0 or inter_h <= 0:
        assert (kept, problem) == (None, "outside")
        return
    cx0, cy0, cx1, cy1 = kept
    assert 0 <= cx0 < cx1 <= w and 0 <= cy0 < cy1 <= h                 # inside, positive area
    assert x0 <= cx0 and y0 <= cy0 and cx1 <= x1 and cy1 <= y1         # never grows
    inside = x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h
    if inside:
        assert kept == (x0, y0, x1, y1) and problem is None            # untouched
    moved = max(cx0 - x0, cy0 - y0, x1 - cx1, y1 - cy1)
    assert (problem == "clipped") == (moved > 1.0)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4))
def test_clip_box_never_keeps_a_non_finite_box(box):
    kept, problem = clip_box(tuple(box), 64, 48)
    if not all(math.isfinite(v) for v in box):
        assert kept is None and problem == "inverted"


@st.composite
def coco_sources(draw):
    ids = draw(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=6,
                        unique=True))
    names = [f"class_{i}_{n}" for n, i in enumerate(draw(st.permutations(range(len(ids)))))]
    cats = draw(st.permutations([{"id": i, "name": n} for i, n in zip(ids, names)]))
    objects = draw(st.lists(st.lists(st.sampled_from(ids), min_size=0, max_size=3),
                            min_size=8, max_size=12))
    return cats, objects


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(coco_sources())
def test_any_coco_ids_map_to_1_k_in_id_order_and_every_object_keeps_its_class(source):
    cats, objects = source
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "src"
        images, anns = [], []
        jpeg = fx.encode(fx.picture(32, 24, []))
        for i, objs in enumerate(objects):
            (root / "img").mkdir(parents=True, exist_ok=True)
            rect = (i % 20, 1, i % 20 + 8, 9, (200, 0, 0))      # a different picture each
            (root / f"img/{i}.jpg").write_bytes(jpeg if i == 0 else
                                                fx.encode(fx.picture(32, 24, [rect])))
            images.append({"id": 10 * i + 7, "file_name": f"{i}.jpg", "width": 32, "height": 24})
            for k, cid in enumerate(objs):
                anns.append({"id": len(anns) + 1, "image_id": 10 * i + 7, "category_id": cid,
                             "bbox": [k * 5, k * 3, 6 + k, 5 + k], "iscrowd": 0})
        (root / "train.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                     "categories": cats}))
        info = import_dataset(root, Path(tmp) / "art", ImportOptions(val_fraction=0.25,
                                                                     calibration_fraction=0.25))
        by_id = sorted(cats, key=lambda c: c["id"])
        assert info.classes == [{"id": k + 1, "name": c["name"], "source_id": c["id"]}
                                for k, c in enumerate(by_id)]
        mapping = {str(c["id"]): k + 1 for k, c in enumerate(by_id)}
        assert info.source["mapping"] == mapping
        got, want = Counter(), Counter()
        for split in ("train", "val", "calibration"):
            coco = json.loads((Path(tmp) / f"art/coco/annotations/{split}.json").read_text())
            for a in coco["annotations"]:
                got[(a["source_id"], a["category_id"])] += 1
        for a in anns:
            want[(a["id"], mapping[str(a["category_id"])])] += 1
        assert got == want


@settings(max_examples=60, deadline=None)
@given(units=st.lists(st.frozensets(st.integers(1, 5), max_size=3), min_size=10, max_size=120),
       val=st.floats(0.05, 0.4), cal=st.floats(0.05, 0.4), seed=st.integers(0, 2**31))
def test_carving_is_deterministic_disjoint_sized_and_stratified(units, val, cal, seed):
    assume(val + cal < 0.9)
    picked = carve(units, {"val": val, "calibration": cal}, seed)
    assert picked == carve(list(units), {"val": val, "calibration": cal}, seed)
    assert not set(picked["val"]) & set(picked["calibration"])
    n = len(units)
    assert len(picked["val"]) == min(n, math.floor(val * n + 0.5))
    assert len(picked["calibration"]) == min(n - len(picked["val"]), math.floor(cal * n + 0.5))
    # each stratum (rarest class of a unit) gives val its share, within one unit
    counts = Counter(c for u in units for c in u)
    key = [min(u, key=lambda c: (counts[c], str(c))) if u else None for u in units]
    for stratum, size in Counter(key).items():
        in_val = sum(1 for i in picked["val"] if key[i] == stratum)
        assert abs(in_val - val * size) <= 1 + 1e-9, (stratum, size, in_val)


names = st.text(alphabet="abcdefghij _-XYZ'\"", min_size=1, max_size=12).filter(str.strip)


@given(st.dictionaries(st.integers(1, 1000), names, min_size=1, max_size=8).filter(
    lambda d: len(set(d.values())) == len(d)))
def test_label_map_round_trip(items):
    def quote(s):
        return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"

    text = "".join(f"# item {i}\nitem {{\n  name: {quote(n)}\n  id: {i}\n}}\n"
                   for i, n in items.items())
    cats = parse_label_map(text, "m.pbtxt")
    assert [(c.source_id, c.name) for c in cats] == sorted(items.items())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_boxes_follows_pillow(orientation):
    """A box drawn on the stored pixels lands where ImageOps.exif_transpose shows the object."""
    from PIL import Image, ImageOps

    stored = fx.picture(50, 30, [(5, 4, 21, 13, (220, 40, 40))])
    exif = Image.Exif()
    exif[0x0112] = orientation
    with Image.open(__import__("io").BytesIO(fx.encode(stored, "PNG", exif=exif.tobytes()))) as img:
        shown = ImageOps.exif_transpose(img)
        expected = fx.mask_box(shown, (220, 40, 40))
    got = orient_boxes(np.array([[5, 4, 21, 13]]), orientation, (50, 30))[0]
    np.testing.assert_allclose(got, expected)


@given(h=st.integers(8, 400), w=st.integers(8, 400), dst=st.sampled_from([(160, 160), (96, 128)]),
       policy=st.sampled_from(["stretch", "letterbox"]),
       box=st.tuples(*[st.floats(0, 1) for _ in range(4)]))
def test_resize_policies_map_boxes_there_and_back(h, w, dst, policy, box):
    y0, x0, y1, x1 = box
    b = np.array([[min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1)]])
    t = resize_transform((h, w), dst, policy)
    there = boxes_to_input(b, t)
    assert (there >= -1e-6).all() and (there <= 1 + 1e-6).all()
    np.testing.assert_allclose(boxes_from_input(there, t), b, atol=1e-5)
    if policy == "letterbox":
        (nh, nw) = t.new_size
        assert abs(nh / nw - h / w) <= max(1 / nh, 1 / nw) * (h / w + 1) + 1e-9   # aspect kept


def test_stretch_is_what_training_always_did_and_letterbox_pads():
    from PIL import Image

    image = np.asarray(fx.picture(90, 30, [(0, 0, 45, 30, (250, 0, 0))]))
    stretched, _ = resize_image(image, (64, 64), "stretch")
    np.testing.assert_array_equal(
        stretched, np.asarray(Image.fromarray(image).resize((64, 64), Image.BILINEAR)))
    boxed, t = resize_image(image, (64, 64), "letterbox")
    assert t.new_size == (21, 64) and t.offset == (21, 0)
    assert (boxed[:21] == 114).all() and (boxed[42:] == 114).all()
    np.testing.assert_allclose(boxes_to_input([[0, 0, 1, 0.5]], t), [[21 / 64, 0, 42 / 64, 0.5]])
