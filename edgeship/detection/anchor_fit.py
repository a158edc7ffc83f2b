"""Anchors fitted to a dataset's training boxes (the default layout was hand-tuned for generated
shapes and misses most boxes of real photos).

Boxes are float [N, 4] (ymin, xmin, ymax, xmax) normalized to the model input: the layout the
training targets use (``TrainData.boxes``, ``stream.examples``' ``"boxes"``, the boxes
``train_data.assign_targets`` matches). Anchors are ``make_anchors``' (ycenter, xcenter, h, w),
normalized the same way; on a non-square input an anchor of scale ``s`` and ratio ``r`` is
``s * sqrt(r)`` of the width by ``s / sqrt(r)`` of the height, and a box's *size* in pixels is
``sqrt(w * h)`` measured against the side ``sqrt(H * W)``.

Quality measure (:func:`unmatched_share`): the share of boxes whose best IoU with any anchor is
below the matcher's positive threshold (``LossConfig.pos_iou``, 0.5). ``assign_targets`` still
force-matches each box to its best anchor, but such a box trains on a poorly fitting anchor: the
share is what the threshold rule alone would miss. IoU does not depend on the anchor grid's
extent: for one anchor shape the best anchor is the one whose center is nearest on each axis, so
each box is compared with one anchor per shape and level (exact, and O(N x shapes) memory).

Method (:func:`fit_anchors`):

1. strides: (16, 32); 8 is added when at least ``small_object_share`` of the boxes are smaller
   than 3 x 16 = 48 px: a box of size s whose anchor center is off by t/2 on both axes keeps
   IoU >= 0.5 with a perfectly shaped anchor only while s >= 2.7 t, so stride 16 cannot be relied
   on under ~48 px (at 48 px: 0.53). 64 (then 128) is added when at least that share is
   >= 4 x 64 = 256 px (>= 512 px): past the range the level rule gives stride 32 (64); matching
   itself never needs a coarser grid, the extra level is for the receptive field.
2. level rule: a box of size ``s`` px goes to the coarsest stride ``t`` with ``s >= 4 t`` (so
   ``s / t`` in [4, 8) between the finest and coarsest level, RetinaNet's spacing); smaller boxes
   go to the finest level. Then the grid step is at most s/4: a center off by t/2 on both axes
   still leaves IoU >= 0.62 with a perfectly shaped anchor.
3. scales: per level, k-means with distance 1 - IoU on the box shapes (w, h in pixels, boxes
   aligned at a corner: YOLOv2's anchor clustering), k = ``scales_per_level``, k-means++ seeding
   from ``numpy.random.default_rng(seed)``, median updates, at most 100 iterations (stops when
   the assignment no longer changes); each cluster gives the scale ``sqrt(w h) / side``. A level
   with no box gets scales spread evenly (log) over its range [4 t, 8 t), at most the full side.
4. aspect ratios (w/h, shared by all levels): ``num_aspect_ratios`` quantiles of the boxes'
   log(w/h) at (i + 0.5) / n; the one nearest 1 becomes exactly 1.0 when within a factor 1.5 of
   it (square anchors, the robust default); duplicates are dropped.
5. guard: if the fitted layout leaves more boxes unmatched than ``ModelConfig``'s default at the
   same input size (tiny or odd sets), the default layout is returned, with ``reason`` saying so.

Fitting uses the boxes as given (no augmentation); training's scale jitter (0.8..1.15) and flips
move boxes around these shapes, which the [4, 8) spacing tolerates.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeship.detection.model import ModelConfig, as_config, make_anchors
from edgeship.detection.train_data import LossConfig

EPS = 1e-3            # tolerance for box coordinates outside [0, 1] (clipped after the check)
LEVEL_RANGE = 4.0     # a box of size s goes to the coarsest stride t with s >= LEVEL_RANGE * t
SMALL_RANGE = 3.0     # stride 8 is added for boxes smaller than SMALL_RANGE * 16 px
RATIO_SNAP = 1.5      # the ratio nearest 1 becomes 1.0 when within this factor of it
KMEANS_ITERS = 100
CHUNK = 65536         # boxes per IoU chunk
_DEFAULT_IOU = LossConfig.pos_iou


@dataclass(frozen=True)
class AnchorFit:
    """A fitted anchor layout for ``ModelConfig`` and how well it covers the boxes."""

    input_size: tuple[int, int]
    strides: tuple[int, ...]
    anchor_scales: tuple[tuple[float, ...], ...]
    aspect_ratios: tuple[float, ...]
    unmatched_share: float          # of the boxes, with this layout
    unmatched_share_default: float  # of the boxes, with ModelConfig's default layout
    boxes: int                      # boxes the fit used
    iou_threshold: float = _DEFAULT_IOU
    seed: int = 0
    reason: str | None = None       # set when the default layout was kept instead of the fit

    def config_kwargs(self) -> dict[str, Any]:
        """``ModelConfig(**fit.config_kwargs(), ...)`` arguments for this layout."""
        return {"strides": self.strides, "anchor_scales": self.anchor_scales,
                "aspect_ratios": self.aspect_ratios}

    def as_record(self) -> dict[str, Any]:
        """JSON-able summary (model_config / history)."""
        return {"method": "kmeans_iou", "input_size": list(self.input_size),
                "strides": list(self.strides), "anchor_scales": [list(s) for s in self.anchor_scales],
                "aspect_ratios": list(self.aspect_ratios), "iou_threshold": float(self.iou_threshold),
                "boxes": int(self.boxes), "seed": int(self.seed),
                "unmatched_share": float(self.unmatched_share),
                "unmatched_share_default": float(self.unmatched_share_default), "reason": self.reason}


def check_boxes(boxes: Any, where: str) -> np.ndarray:
    """float64 [N, 4] (ymin, xmin, ymax, xmax) clipped to [0, 1], or ValueError naming ``where``,
    the box index and its values: not (N, 4), empty, non-finite, outside [0, 1] beyond ``EPS``,
    zero or negative height or width."""
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: boxes are not a numeric (N, 4) array: {exc}") from exc
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{where}: boxes must be (N, 4) (ymin, xmin, ymax, xmax), got shape {arr.shape}")
    if len(arr) == 0:
        raise ValueError(f"{where}: no boxes (empty array of shape {arr.shape})")
    bad = np.flatnonzero(~np.isfinite(arr).all(1))
    if len(bad):
        raise ValueError(f"{where}: box {bad[0]} {arr[bad[0]].tolist()} has a non-finite value")
    bad = np.flatnonzero(((arr < -EPS) | (arr > 1 + EPS)).any(1))
    if len(bad):
        raise ValueError(f"{where}: box {bad[0]} {arr[bad[0]].tolist()} lies outside [0, 1] "
                         f"(normalized ymin, xmin, ymax, xmax)")
    arr = np.clip(arr, 0.0, 1.0)
    h, w = arr[:, 2] - arr[:, 0], arr[:, 3] - arr[:, 1]
    bad = np.flatnonzero((h <= 0) | (w <= 0))
    if len(bad):
        i = bad[0]
        raise ValueError(f"{where}: box {i} {arr[i].tolist()} has height {h[i]:g} and width {w[i]:g}; "
                         f"both must be > 0 (ymin < ymax, xmin < xmax)")
    return arr


def _check_threshold(iou_threshold: float) -> float:
    t = float(iou_threshold)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    return t


def _nearest(centers: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The value of ``centers`` (sorted) nearest each of ``values``."""
    hi = np.clip(np.searchsorted(centers, values), 0, len(centers) - 1)
    lo = np.clip(hi - 1, 0, len(centers) - 1)
    take_lo = np.abs(centers[lo] - values) < np.abs(centers[hi] - values)
    return np.where(take_lo, centers[lo], centers[hi])


def best_iou(boxes: np.ndarray, config: ModelConfig | Mapping[str, Any]) -> np.ndarray:
    """float64 [N]: each box's (checked, corner form) highest IoU with ``make_anchors(config)``.

    Per level the anchors are a (rows, cols, shapes) grid; for each shape the anchor with the
    nearest center on each axis has the largest overlap, so only that one is compared."""
    config = as_config(config)
    anchors = make_anchors(config).astype(np.float64)
    cy, cx = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    best = np.zeros(len(boxes))
    start = 0
    for (rows, cols), n in zip(config.feature_shapes(), config.anchors_per_location):
        level = anchors[start:start + rows * cols * n].reshape(rows, cols, n, 4)
        start += rows * cols * n
        ys, xs, hw = level[:, 0, 0, 0], level[0, :, 0, 1], level[0, 0, :, 2:]
        grid = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1)[:, :, None, :]
        if not (np.array_equal(level[..., :2], np.broadcast_to(grid, level[..., :2].shape))
                and np.array_equal(level[..., 2:], np.broadcast_to(hw, level[..., 2:].shape))):
            raise RuntimeError("make_anchors no longer lays anchors out as a (row, col, shape) grid")
        ah, aw = hw[None, :, 0], hw[None, :, 1]
        for i in range(0, len(boxes), CHUNK):
            sl = slice(i, i + CHUNK)
            ay, ax = _nearest(ys, cy[sl])[:, None], _nearest(xs, cx[sl])[:, None]
            b = boxes[sl, :, None]
            ih = np.minimum(b[:, 2], ay + ah / 2) - np.maximum(b[:, 0], ay - ah / 2)
            iw = np.minimum(b[:, 3], ax + aw / 2) - np.maximum(b[:, 1], ax - aw / 2)
            inter = np.maximum(ih, 0.0) * np.maximum(iw, 0.0)
            iou = inter / np.maximum(area[sl, None] + ah * aw - inter, 1e-12)
            best[sl] = np.maximum(best[sl], iou.max(1))
    return best


def unmatched_share(boxes: Any, config: ModelConfig | Mapping[str, Any],
                    iou_threshold: float = _DEFAULT_IOU) -> float:
    """Share of ``boxes`` (N, 4) (ymin, xmin, ymax, xmax) normalized whose best IoU with
    ``make_anchors(config)`` is below ``iou_threshold`` (``LossConfig.pos_iou``): the boxes the
    matcher's threshold rule misses. ``assign_targets`` still force-matches each box to its best
    anchor; such boxes are counted here as unmatched all the same."""
    threshold = _check_threshold(iou_threshold)
    arr = check_boxes(boxes, "unmatched_share")
    return float(np.mean(best_iou(arr, config) < threshold))


def _shape_iou(shapes: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """IoU [N, K] of (w, h) shapes aligned at a corner."""
    inter = (np.minimum(shapes[:, None, 0], centers[None, :, 0])
             * np.minimum(shapes[:, None, 1], centers[None, :, 1]))
    union = shapes[:, None, 0] * shapes[:, None, 1] + centers[None, :, 0] * centers[None, :, 1] - inter
    return inter / union


def kmeans_shapes(shapes: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``k`` cluster shapes [k', 2] of (w, h) ``shapes`` under the distance 1 - IoU:
    k-means++ seeding from ``rng``, median updates, at most ``KMEANS_ITERS`` iterations."""
    unique = np.unique(shapes, axis=0)
    if len(unique) <= k:
        return unique
    centers = [shapes[rng.integers(len(shapes))]]
    for _ in range(1, k):
        d = 1.0 - _shape_iou(shapes, np.asarray(centers)).max(1)
        p = d * d
        if p.sum() <= 0:
            break
        centers.append(shapes[rng.choice(len(shapes), p=p / p.sum())])
    centers_arr = np.array(centers, dtype=np.float64)
    assign = None
    for _ in range(KMEANS_ITERS):
        new = _shape_iou(shapes, centers_arr).argmax(1)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        for j in range(len(centers_arr)):
            members = assign == j
            if members.any():
                centers_arr[j] = np.median(shapes[members], axis=0)
    return centers_arr


def level_index(sizes_px: np.ndarray, strides: Sequence[int]) -> np.ndarray:
    """Index into ``strides`` (increasing) of each size: the coarsest stride t with
    size >= LEVEL_RANGE * t; smaller sizes go to the finest level."""
    bounds = LEVEL_RANGE * np.asarray(strides, np.float64)
    return np.clip(np.searchsorted(bounds, sizes_px, side="right") - 1, 0, len(strides) - 1)


def choose_strides(sizes_px: np.ndarray, small_object_share: float) -> tuple[int, ...]:
    """(16, 32), plus 8 when at least ``small_object_share`` of the sizes (and one box) fall
    under 3 x 16 px, plus 64 (then 128) when that share is at least 4 x 64 (4 x 128) px."""
    need = max(1.0, small_object_share * len(sizes_px))
    strides = [16, 32]
    if np.count_nonzero(sizes_px < SMALL_RANGE * 16) >= need:
        strides.insert(0, 8)
    for t in (64, 128):
        if strides[-1] == t // 2 and np.count_nonzero(sizes_px >= LEVEL_RANGE * t) >= need:
            strides.append(t)
    return tuple(strides)


def _aspect_ratios(log_ratios: np.ndarray, n: int) -> tuple[float, ...]:
    q = np.quantile(log_ratios, (np.arange(n) + 0.5) / n)
    j = int(np.argmin(np.abs(q)))
    if abs(q[j]) < math.log(RATIO_SNAP):
        q[j] = 0.0
    return tuple(sorted({round(float(math.exp(v)), 3) for v in q}))


def _level_scales(shapes_px: np.ndarray, stride: int, side: float, k: int,
                  rng: np.random.Generator) -> tuple[float, ...]:
    if len(shapes_px):
        sizes = np.sqrt(np.prod(kmeans_shapes(shapes_px, k, rng), axis=1))
    else:
        sizes = LEVEL_RANGE * stride * 2.0 ** ((np.arange(k) + 0.5) / k)
    return tuple(sorted({max(1e-4, round(min(1.0, float(s) / side), 4)) for s in sizes}))


def _check_fit_args(input_size: Sequence[int], strides: Sequence[int] | None, scales_per_level: int,
                    num_aspect_ratios: int, small_object_share: float) -> ModelConfig:
    """ModelConfig's own checks of input_size and strides; ValueError for the other arguments."""
    for name, v in (("scales_per_level", scales_per_level), ("num_aspect_ratios", num_aspect_ratios)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"fit_anchors: {name} must be an integer >= 1, got {v!r}")
    if not 0.0 <= float(small_object_share) <= 1.0:
        raise ValueError(f"fit_anchors: small_object_share must be in [0, 1], got {small_object_share}")
    default = ModelConfig(input_size=tuple(input_size))
    if strides is not None:
        ModelConfig(input_size=default.input_size, strides=tuple(strides),
                    anchor_scales=[(0.1,)] * len(tuple(strides)))
    return default


def fit_anchors(boxes: Any, input_size: Sequence[int], *, strides: Sequence[int] | None = None,
                scales_per_level: int = 2, num_aspect_ratios: int = 3, seed: int = 0,
                small_object_share: float = 0.1, iou_threshold: float = _DEFAULT_IOU) -> AnchorFit:
    """Fit strides, per-level scales and shared aspect ratios to ``boxes`` (N, 4) (ymin, xmin,
    ymax, xmax) normalized at ``input_size`` (H, W); see the module docstring for the rules.
    ``strides`` given: used as they are (checked by ModelConfig). Deterministic for ``seed``."""
    default = _check_fit_args(input_size, strides, scales_per_level, num_aspect_ratios,
                              small_object_share)
    threshold = _check_threshold(iou_threshold)
    arr = check_boxes(boxes, "fit_anchors")
    (h_px, w_px), side = default.input_size, math.sqrt(default.input_size[0] * default.input_size[1])
    hn, wn = arr[:, 2] - arr[:, 0], arr[:, 3] - arr[:, 1]
    shapes = np.stack([wn * w_px, hn * h_px], 1)
    sizes = np.sqrt(shapes[:, 0] * shapes[:, 1])
    chosen = tuple(int(s) for s in strides) if strides is not None else \
        choose_strides(sizes, float(small_object_share))
    levels = level_index(sizes, chosen)
    rng = np.random.default_rng(seed)
    scales = tuple(_level_scales(shapes[levels == i], t, side, scales_per_level, rng)
                   for i, t in enumerate(chosen))
    ratios = _aspect_ratios(np.log(wn / hn), num_aspect_ratios)
    fitted = ModelConfig(input_size=default.input_size, strides=chosen, anchor_scales=scales,
                         aspect_ratios=ratios)
    share = float(np.mean(best_iou(arr, fitted) < threshold))
    share_default = float(np.mean(best_iou(arr, default) < threshold))
    reason = None
    if share > share_default:
        reason = (f"the fitted anchors left {share:.1%} of the {len(arr)} boxes below IoU {threshold:g}, "
                  f"the default layout {share_default:.1%}: kept the default")
        fitted, share = default, share_default
    return AnchorFit(default.input_size, fitted.strides, fitted.anchor_scales, fitted.aspect_ratios,
                     share, share_default, len(arr), threshold, int(seed), reason)


def collect_boxes(source: Iterable[Any], *, max_boxes: int = 100_000) -> np.ndarray:
    """float32 [N, 4] (ymin, xmin, ymax, xmax): the boxes of ``source``, an iterable of per-image
    box arrays [M, 4] (M may be 0) or of mappings with a ``"boxes"`` entry, e.g. the elements of
    ``stream.examples(stream.open_split(uri, "train"), input_size)`` (boxes already on the
    input under the split's resize policy; that pipeline decodes the images, as letterbox
    placement needs each image's size). Reading stops once ``max_boxes`` are gathered (the
    first ones in the source's order: shuffle a source whose order is biased). Each image's boxes
    are checked; a ValueError names the image's index. No boxes at all is a ValueError."""
    if isinstance(max_boxes, bool) or not isinstance(max_boxes, (int, np.integer)) or max_boxes < 1:
        raise ValueError(f"collect_boxes: max_boxes must be an integer >= 1, got {max_boxes!r}")
    parts, total = [], 0
    for i, item in enumerate(source):
        value = item["boxes"] if isinstance(item, Mapping) else item
        value = value.numpy() if hasattr(value, "numpy") else value
        if np.size(value) == 0:
            continue
        parts.append(check_boxes(value, f"collect_boxes: image {i}")[: max_boxes - total])
        total += len(parts[-1])
        if total >= max_boxes:
            break
    if not parts:
        raise ValueError("collect_boxes: the source has no boxes")
    return np.concatenate(parts).astype(np.float32)
