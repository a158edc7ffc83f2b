"""Views of the val photos for the gate's ΔmAP on small splits (components/evaluate/views.py): the
geometry of each view (mirror, centre crop, truncated objects turned into ignore regions), the
auto rule, and the evaluation report carrying the gate's ΔmAP over the views next to the photos'."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.evaluate import core, views
from edgeship.contracts import evaluation
from edgeship.contracts import variants as variants_contract
from tests.support.evaluate_data import CLASSES, make_example, standin_examples


def test_mirror_flips_pixels_and_boxes_and_twice_is_the_photo():
    ex = make_example(0, [[0.1, 0.2, 0.5, 0.4]], [1], size=(20, 30))
    ex.image[3, 2] = [255, 0, 0]
    m = views.mirror(ex)
    assert np.allclose(m.boxes, [[0.1, 0.6, 0.5, 0.8]])
    assert (m.image[3, 27] == [255, 0, 0]).all() and m.image_id == "000000#mirror"
    back = views.mirror(m)
    assert np.allclose(back.boxes, ex.boxes) and (back.image == ex.image).all()


def test_centre_crop_moves_clips_ignores_and_drops_boxes():
    ex = make_example(0, [[0.4, 0.4, 0.6, 0.6],      # inside: moved into the crop's frame
                          [0.0, 0.4, 0.15, 0.6],     # a third of it inside: ignore region
                          [0.0, 0.0, 0.05, 0.05],    # entirely outside: not in this view
                          [0.05, 0.3, 0.45, 0.7]],   # ~81 % inside: still a target, clipped
                      [1, 2, 3, 1], size=(100, 100))
    c = views.centre_crop(ex, 0.8)  # pixels 10..90
    assert c.image.shape[:2] == (80, 80) and list(c.labels) == [1, 2, 1]
    assert np.allclose(c.boxes[0], [0.375, 0.375, 0.625, 0.625])
    assert np.allclose(c.boxes[1], [0.0, 0.375, 0.0625, 0.625])
    assert np.allclose(c.boxes[2], [0.0, 0.25, 0.4375, 0.75])
    assert list(c.difficult) == [False, True, False]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(*[st.floats(0.0, 1.0)] * 4), min_size=0, max_size=6),
       st.integers(8, 64), st.integers(8, 64), st.floats(0.5, 0.95))
def test_crop_views_keep_every_kept_target_mostly_visible(raw, h, w, side):
    boxes = np.array([[min(a, c), min(b, d), max(a, c) + 1e-3, max(b, d) + 1e-3] for a, b, c, d in raw],
                     np.float32).reshape(-1, 4).clip(0, 1)
    ex = make_example(1, boxes, np.ones(len(boxes), np.int32), size=(h, w))
    for view in (views.centre_crop(ex, side), views.mirror(views.centre_crop(ex, side))):
        n = len(view.boxes)
        assert len(view.labels) == n and len(view.difficult) == n and n <= len(boxes)
        assert ((view.boxes >= 0) & (view.boxes <= 1)).all()
        assert (view.boxes[:, 2] >= view.boxes[:, 0]).all() and (view.boxes[:, 3] >= view.boxes[:, 1]).all()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000))
def test_auto_views_are_the_fewest_that_reach_200_images(photos):
    k = views.views_for(photos)
    assert k in (1, 2, 4)
    assert photos * k >= views.AUTO_MIN_IMAGES or k == views.MAX_VIEWS
    smaller = [j for j in (1, 2, 4) if j < k]
    assert all(photos * j < views.AUTO_MIN_IMAGES for j in smaller)


@pytest.mark.parametrize("bad", [0, 5, -2, True, 1.5, "4"])
def test_a_bad_views_value_is_named(bad):
    with pytest.raises(ValueError, match=f"got {bad!r}".replace("(", r"\(").replace(")", r"\)")):
        views.views_for(30, bad)


def test_extra_views_come_in_kind_order_with_their_photo_as_group():
    photos = standin_examples(3)
    extra, groups = views.extra_views(photos, 4)
    assert [e.image_id.split("#", 1)[1] for e in extra] == ["mirror"] * 3 + ["crop85"] * 3 + ["crop85#mirror"] * 3
    assert groups.tolist() == [0, 1, 2] * 4
    assert views.extra_views(photos, 1)[0] == [] and views.extra_views(photos, 1)[1].tolist() == [0, 1, 2]


def _evaluate(standin_variants, n, count):
    specs, _ = variants_contract.load_variants(standin_variants)
    return core.evaluate_examples(specs, standin_examples(n), CLASSES, latency_runs=4, latency_warmup=1,
                                  threads=1, show_progress=False, slices=(), views=count)


def test_a_small_split_gets_the_gates_delta_over_its_views(standin_variants):
    report = _evaluate(standin_variants, 4, -1)  # 4 photos: auto → 4 views each
    doc = report.to_dict()
    assert doc["intervals"]["views"]["per_image"] == 4 and doc["intervals"]["views"]["scored_images"] == 16
    assert doc["images"] == 4  # the photos; the report's mAP columns stay on them
    for name, row in report.variants.items():
        assert row.views_coco.images == 16 and row.coco.images == 4
        assert row.delta_map_views == pytest.approx((report.variants["fp32"].views_coco.map - row.views_coco.map) * 100, abs=1e-3)
        lo, hi = row.delta_map_views_ci
        assert lo <= row.delta_map_views + 1e-9 and row.delta_map_views - 1e-9 <= hi
        point, ci, with_views = evaluation.gate_delta(doc["variants"][name])
        assert with_views and point == row.delta_map_views and ci == (lo, hi)


def test_views_off_leaves_the_report_as_before(standin_variants):
    doc = _evaluate(standin_variants, 4, 1).to_dict()
    assert "views" not in (doc["intervals"] or {})
    for row in doc["variants"].values():
        assert row[evaluation.DELTA_MAP_VIEWS] is None and row[evaluation.DELTA_MAP_VIEWS_CI] is None
        assert evaluation.gate_delta(row)[2] is False
