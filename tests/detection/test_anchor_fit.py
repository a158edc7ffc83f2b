"""Anchor fitting (edgeship.detection.anchor_fit): the fit covers the boxes far better than the
default layout on small-object and raccoon-like sets, picks strides by object size, is
deterministic, always gives a valid ModelConfig and is never worse than the default; the
unmatched share equals a brute-force IoU over every anchor; bad input names the bad value."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeship.detection import anchor_fit
from edgeship.detection.model import ModelConfig, make_anchors


def boxes_of(n, size_px, aspect, input_size=(160, 160), seed=1):
    """n boxes (ymin, xmin, ymax, xmax) normalized: size sqrt(w h) uniform in ``size_px`` (pixels
    at ``input_size``), w/h log-uniform in ``aspect``, centers uniform inside the image."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(*size_px, n)
    a = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1]), n))
    w = np.minimum(s * np.sqrt(a) / input_size[1], 1.0)
    h = np.minimum(s / np.sqrt(a) / input_size[0], 1.0)
    cy, cx = rng.uniform(h / 2, 1 - h / 2), rng.uniform(w / 2, 1 - w / 2)
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], 1)


def brute_force_best_iou(boxes, config):
    """Each box's best IoU over every anchor of make_anchors (corner conversion as the matcher)."""
    y, x, h, w = make_anchors(config).astype(np.float64).T
    a = np.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], 1)
    ih = np.minimum(boxes[:, None, 2], a[None, :, 2]) - np.maximum(boxes[:, None, 0], a[None, :, 0])
    iw = np.minimum(boxes[:, None, 3], a[None, :, 3]) - np.maximum(boxes[:, None, 1], a[None, :, 1])
    inter = np.maximum(ih, 0) * np.maximum(iw, 0)
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area_b[:, None] + (h * w)[None, :] - inter
    return (inter / union).max(1)


def test_small_objects_add_stride_8_and_cut_the_unmatched_share():
    boxes = boxes_of(500, (10, 30), (0.5, 2.0))
    fit = anchor_fit.fit_anchors(boxes, (160, 160))
    # measured: default 0.586 unmatched, fit (8, 16, 32) 0.134 (boxes under 32 px stay hard at stride 8)
    assert fit.strides[0] == 8 and fit.reason is None
    assert fit.unmatched_share_default > 0.5
    assert fit.unmatched_share < 0.2 and fit.unmatched_share < fit.unmatched_share_default / 3
    cfg = ModelConfig(input_size=(160, 160), **fit.config_kwargs())
    assert anchor_fit.unmatched_share(boxes, cfg) == pytest.approx(fit.unmatched_share)


def test_large_objects_get_no_stride_8():
    boxes = boxes_of(500, (0.4 * 160, 0.9 * 160), (0.5, 2.0))
    fit = anchor_fit.fit_anchors(boxes, (160, 160))
    # measured: default 0.644, fit (16, 32) 0.0
    assert fit.strides == (16, 32)
    assert fit.unmatched_share < 0.05 and fit.unmatched_share_default > 0.5


@pytest.mark.parametrize("side", [160, 320])
def test_raccoon_like_boxes_are_covered(side):
    boxes = boxes_of(300, (0.3 * side, 0.9 * side), (0.5, 1.5), (side, side))
    fit = anchor_fit.fit_anchors(boxes, (side, side))
    # measured: 160: default 0.573, fit (16, 32) 0.0; 320: default 0.493, fit (16, 32, 64) 0.0
    assert fit.unmatched_share <= fit.unmatched_share_default
    assert fit.unmatched_share < 0.05 and fit.unmatched_share_default > 0.4
    assert 8 not in fit.strides and 1.0 in fit.aspect_ratios
    record = fit.as_record()
    assert json.loads(json.dumps(record)) == record
    assert record["strides"] == list(fit.strides) and record["boxes"] == 300


def test_non_square_input_and_fixed_strides():
    boxes = boxes_of(200, (20, 120), (0.4, 2.5), (128, 224), seed=3)
    fit = anchor_fit.fit_anchors(boxes, (128, 224), strides=(8, 16, 32, 64), scales_per_level=3,
                                 num_aspect_ratios=4)
    assert fit.strides == (8, 16, 32, 64) and fit.input_size == (128, 224)
    assert all(1 <= len(s) <= 3 for s in fit.anchor_scales) and len(fit.aspect_ratios) <= 4
    assert fit.unmatched_share <= fit.unmatched_share_default


def test_same_seed_same_fit():
    boxes = boxes_of(2000, (8, 150), (0.3, 3.0), seed=7)
    a = anchor_fit.fit_anchors(boxes, (160, 160), seed=5, scales_per_level=3)
    b = anchor_fit.fit_anchors(boxes.copy(), (160, 160), seed=5, scales_per_level=3)
    assert a == b and a.as_record() == b.as_record()


@pytest.mark.parametrize("input_size, strides", [
    ((160, 160), (16, 32)), ((96, 160), (8, 16, 32)), ((320, 192), (16, 32, 64, 128))])
def test_unmatched_share_equals_brute_force(input_size, strides):
    scales = [(0.05 * (i + 1), 0.08 * (i + 1)) for i in range(len(strides))]
    cfg = ModelConfig(input_size=input_size, strides=strides, anchor_scales=scales,
                      aspect_ratios=(1.0, 2.0, 0.5))
    boxes = np.concatenate([boxes_of(150, (4, 200), (0.2, 5.0), input_size, seed=11),
                            [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.01, 0.01], [0.5, 0.5, 0.51, 1.0]]])
    want = brute_force_best_iou(boxes, cfg)
    np.testing.assert_allclose(anchor_fit.best_iou(boxes, cfg), want, rtol=1e-9, atol=1e-12)
    for t in (0.3, 0.5, 0.7):
        assert anchor_fit.unmatched_share(boxes, cfg, t) == pytest.approx(np.mean(want < t))


def test_unmatched_share_by_hand():
    cfg = ModelConfig(input_size=(64, 64), strides=(32,), anchor_scales=((0.5,),), aspect_ratios=(1.0,))
    # anchors: 2 x 2 grid of 0.5 x 0.5 squares at centers 0.25 / 0.75
    boxes = np.array([[0.0, 0.0, 0.5, 0.5],      # exactly an anchor: IoU 1
                      [0.0, 0.0, 0.25, 0.5],     # half of one: IoU 0.5 (matched, >= threshold)
                      [0.0, 0.0, 0.2, 0.5],      # IoU 0.4
                      [0.25, 0.25, 0.75, 0.75]])  # centered between four: IoU 1/7
    np.testing.assert_allclose(anchor_fit.best_iou(boxes, cfg), [1.0, 0.5, 0.4, 1 / 7])
    assert anchor_fit.unmatched_share(boxes, cfg) == 0.5


@st.composite
def box_sets(draw):
    n = draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    y0, x0 = rng.uniform(0, 0.95, n), rng.uniform(0, 0.95, n)
    lo = draw(st.sampled_from([0.005, 0.02, 0.1, 0.4]))
    h = lo + rng.uniform(0, 1, n) * (1 - y0 - lo).clip(0)
    w = lo + rng.uniform(0, 1, n) * (1 - x0 - lo).clip(0)
    return np.stack([y0, x0, np.minimum(1, y0 + h), np.minimum(1, x0 + w)], 1)  # y0, x0 <= 0.95


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(boxes=box_sets(), input_size=st.tuples(st.sampled_from([64, 128, 160, 320, 640]),
                                              st.sampled_from([64, 160, 224, 640])),
       spl=st.integers(1, 3), nar=st.integers(1, 4), seed=st.integers(0, 3))
def test_any_fit_is_a_valid_config_never_worse_than_the_default(boxes, input_size, spl, nar, seed):
    fit = anchor_fit.fit_anchors(boxes, input_size, scales_per_level=spl, num_aspect_ratios=nar, seed=seed)
    cfg = ModelConfig(input_size=input_size, **fit.config_kwargs())
    assert len(make_anchors(cfg)) > 0
    assert 0.0 <= fit.unmatched_share <= fit.unmatched_share_default <= 1.0
    assert fit.unmatched_share == pytest.approx(anchor_fit.unmatched_share(boxes, cfg))
    assert fit.unmatched_share_default == pytest.approx(
        anchor_fit.unmatched_share(boxes, ModelConfig(input_size=input_size)))
    assert fit.boxes == len(boxes)
    if fit.reason is None:
        assert all(1 <= len(s) <= spl for s in fit.anchor_scales) and len(fit.aspect_ratios) <= nar
    else:
        assert fit.config_kwargs() == {k: getattr(ModelConfig(), k) for k in fit.config_kwargs()}


def test_tiny_sets_fall_back_to_the_default_when_the_fit_is_worse(monkeypatch):
    boxes = boxes_of(20, (40, 100), (0.5, 2.0))
    # a deliberately poor fit (every box sent to scales far too large) must trip the guard
    monkeypatch.setattr(anchor_fit, "_level_scales", lambda *a, **k: (1.0,))
    fit = anchor_fit.fit_anchors(boxes, (160, 160))
    assert fit.reason and "kept the default" in fit.reason
    assert fit.config_kwargs()["anchor_scales"] == ModelConfig().anchor_scales
    assert fit.unmatched_share == fit.unmatched_share_default


def test_collect_boxes_gathers_and_stops_at_max_boxes():
    items = [np.array([[0.1, 0.1, 0.2, 0.3]]), np.zeros((0, 4)), {"boxes": [[0.0, 0.0, 1.0, 1.0]] * 3},
             np.array([[0.5, 0.5, 0.6, 0.6]] * 5)]
    assert anchor_fit.collect_boxes(items).shape == (9, 4)
    got = anchor_fit.collect_boxes(iter(items), max_boxes=6)
    assert got.dtype == np.float32 and got.shape == (6, 4)
    np.testing.assert_allclose(got[-1], [0.5, 0.5, 0.6, 0.6])


GOOD = [[0.1, 0.1, 0.5, 0.5]]


@pytest.mark.parametrize("boxes, match", [
    (np.zeros((0, 4)), r"no boxes"),
    ([[0.1, 0.2, 0.3]], r"boxes must be \(N, 4\) .*got shape \(1, 3\)"),
    (GOOD + [[0.1, float("nan"), 0.5, 0.5]], r"box 1 \[0.1, nan, 0.5, 0.5\] has a non-finite"),
    (GOOD + [[0.1, 0.1, float("inf"), 0.5]], r"box 1 .*inf.* non-finite"),
    (GOOD + [[0.3, 0.1, 0.3, 0.5]], r"box 1 .* height 0 .*must be > 0"),
    (GOOD * 2 + [[0.1, 0.5, 0.5, 0.2]], r"box 2 .* width -0.3"),
    (GOOD + [[0.1, 0.1, 1.2, 0.5]], r"box 1 \[0.1, 0.1, 1.2, 0.5\] lies outside \[0, 1\]"),
    (GOOD + [[-0.05, 0.1, 0.5, 0.5]], r"box 1 \[-0.05, .* outside"),
])
def test_bad_boxes_name_the_box(boxes, match):
    with pytest.raises(ValueError, match=r"fit_anchors: " + match):
        anchor_fit.fit_anchors(boxes, (160, 160))
    with pytest.raises(ValueError, match=r"unmatched_share: " + match):
        anchor_fit.unmatched_share(boxes, ModelConfig())


def test_boxes_just_outside_within_tolerance_are_clipped():
    fit = anchor_fit.fit_anchors([[-0.0005, 0.0, 1.0004, 0.5]], (160, 160))
    assert fit.boxes == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"input_size": (100, 160)}, r"input_size \[100, 160\]"),
    ({"input_size": (160,)}, r"input_size must be \[H, W\], got \[160\]"),
    ({"scales_per_level": 0}, r"scales_per_level must be an integer >= 1, got 0"),
    ({"num_aspect_ratios": 0}, r"num_aspect_ratios must be an integer >= 1, got 0"),
    ({"num_aspect_ratios": 2.5}, r"num_aspect_ratios .* got 2.5"),
    ({"small_object_share": 1.5}, r"small_object_share must be in \[0, 1\], got 1.5"),
    ({"iou_threshold": 0.0}, r"iou_threshold must be in \(0, 1\], got 0.0"),
    ({"strides": (16, 64)}, r"strides \[16, 64\]: extra strides need 32"),
    ({"strides": (32, 16)}, r"strides must be increasing and distinct, got \[32, 16\]"),
])
def test_bad_arguments_name_the_value(kwargs, match):
    args = {"input_size": (160, 160), **kwargs}
    with pytest.raises(ValueError, match=match):
        anchor_fit.fit_anchors(GOOD, **args)


def test_bad_collect_boxes_input_names_the_image():
    with pytest.raises(ValueError, match=r"collect_boxes: image 1: box 0 .* lies outside"):
        anchor_fit.collect_boxes([GOOD, [[0.0, 0.0, 2.0, 0.5]]])
    with pytest.raises(ValueError, match=r"collect_boxes: the source has no boxes"):
        anchor_fit.collect_boxes([np.zeros((0, 4))])
    with pytest.raises(ValueError, match=r"max_boxes must be an integer >= 1, got 0"):
        anchor_fit.collect_boxes([GOOD], max_boxes=0)
