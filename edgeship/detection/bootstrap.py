"""Bootstrap confidence intervals for COCO mAP over images, paired across models.

pycocotools' ``COCOeval.evaluate()`` matches detections to ground truth per (category, image);
``accumulate()`` then builds each category's precision/recall curve from those matches. Rerunning
COCOeval hundreds of times is slow, so this module runs it once (``coco.coco_evaluate(...,
keep_matches=True)``), keeps the per-image matches of the "all" area range at maxDets=100 in a
:class:`MatchTable`, and rebuilds ``accumulate()`` for any resample of the images given as a count
per image (0, 1, 2, ... copies). A detection of an image drawn twice counts twice in the
cumulative TP/FP sums and its image's ground truth twice in the recall denominator, which is what
COCOeval would compute on a dataset holding both copies side by side (only the order among
detections with exactly equal scores from different images may differ).

With every image counted once (:func:`identity_counts`), :func:`average_precision` equals
COCOeval's ``stats[0]`` / ``stats[1]`` exactly (tests/detection/test_bootstrap.py).

Intervals: percentile bootstrap (``confidence`` central interval of the resampled values),
``resamples`` draws of n images with replacement from the n evaluated images, one fixed seed.
Paired ΔmAP: the same drawn images for the float reference and for each variant, so the
difference is resampled image by image and what both models get right or wrong together cancels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

DEFAULT_RESAMPLES = 200
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class ClassMatches:
    """One category's detections over every image, in COCOeval's accumulate order (score
    descending, stable over images in id order): the image index of each detection and whether it
    is a TP / FP at each IoU threshold (ignored detections are neither)."""

    cat_id: int
    det_image: np.ndarray  # int [D]
    tps: np.ndarray        # bool [T, D]
    fps: np.ndarray        # bool [T, D]
    gt_count: np.ndarray   # int [I] non-ignored ground truth per image


@dataclass(frozen=True)
class MatchTable:
    """Per-image COCO matches of one model on one set of images (what accumulate() needs)."""

    images: int
    rec_thresholds: np.ndarray  # [R]
    iou_thresholds: np.ndarray  # [T]
    classes: tuple[ClassMatches, ...]


def match_table(ev: Any) -> MatchTable:
    """The :class:`MatchTable` of an evaluated ``COCOeval`` (``evaluate()`` done), area "all",
    the largest maxDets (100)."""
    p = ev.params
    n_images, n_areas = len(p.imgIds), len(p.areaRng)
    max_det = p.maxDets[-1]
    area = next(i for i, label in enumerate(p.areaRngLbl) if label == "all")
    t = len(p.iouThrs)
    classes = []
    for k, cat_id in enumerate(p.catIds):
        scores, images, dtm, dtig = [], [], [], []
        gt_count = np.zeros(n_images, np.int64)
        for i in range(n_images):
            e = ev.evalImgs[k * n_areas * n_images + area * n_images + i]
            if e is None:
                continue
            s = np.asarray(e["dtScores"][:max_det], np.float64)
            scores.append(s)
            images.append(np.full(len(s), i, np.int64))
            dtm.append(np.asarray(e["dtMatches"])[:, :max_det].reshape(t, -1))
            dtig.append(np.asarray(e["dtIgnore"])[:, :max_det].reshape(t, -1))
            gt_count[i] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
        if scores:
            all_scores = np.concatenate(scores)
            order = np.argsort(-all_scores, kind="mergesort")  # as accumulate() sorts
            matched = np.concatenate(dtm, axis=1)[:, order]
            ignored = np.concatenate(dtig, axis=1)[:, order]
            det_image = np.concatenate(images)[order]
        else:
            matched = ignored = np.zeros((t, 0))
            det_image = np.zeros(0, np.int64)
        tps = np.logical_and(matched, np.logical_not(ignored))
        fps = np.logical_and(np.logical_not(matched), np.logical_not(ignored))
        classes.append(ClassMatches(int(cat_id), det_image, tps, fps, gt_count))
    return MatchTable(images=n_images, rec_thresholds=np.asarray(p.recThrs, np.float64),
                      iou_thresholds=np.asarray(p.iouThrs, np.float64), classes=tuple(classes))


def identity_counts(n_images: int) -> np.ndarray:
    """Every image once: the evaluated set itself."""
    return np.ones(int(n_images), np.int64)


def resample_counts(n_images: int, resamples: int, seed: int = 0) -> np.ndarray:
    """``resamples`` bootstrap draws of ``n_images`` images with replacement, as counts per image:
    int [resamples, n_images], each row summing to ``n_images``. Deterministic for a seed."""
    n, b = int(n_images), int(resamples)
    if n < 1 or b < 1:
        raise ValueError(f"bootstrap needs >= 1 image and >= 1 resample, got {n} and {b}")
    picks = np.random.default_rng(seed).integers(0, n, size=(b, n))
    flat = (picks + np.arange(b)[:, None] * n).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n)


def precision_table(table: MatchTable, counts: np.ndarray) -> np.ndarray:
    """COCOeval's ``eval["precision"][:, :, :, all, 100]`` ([T, R, K], -1 for a category without
    ground truth in the drawn images) for the images drawn ``counts`` times each."""
    counts = np.asarray(counts, np.int64)
    recs = table.rec_thresholds
    t_count, r_count = len(table.iou_thresholds), len(recs)
    precision = -np.ones((t_count, r_count, len(table.classes)))
    for k, cm in enumerate(table.classes):
        npig = int(np.dot(counts, cm.gt_count))
        if npig == 0:
            continue
        d = len(cm.det_image)
        if d == 0:
            precision[:, :, k] = 0.0
            continue
        weight = counts[cm.det_image]
        tp_sum = np.cumsum(cm.tps * weight, axis=1).astype(float)
        fp_sum = np.cumsum(cm.fps * weight, axis=1).astype(float)
        rc = tp_sum / npig
        pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
        envelope = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # best precision to the right
        for t in range(t_count):
            inds = np.searchsorted(rc[t], recs, side="left")
            precision[t, :, k] = np.where(inds < d, envelope[t, np.minimum(inds, d - 1)], 0.0)
    return precision


def average_precision(table: MatchTable, counts: np.ndarray | None = None) -> tuple[float, float]:
    """(mAP@[.5:.95], mAP@.5) as COCOeval's summarize() computes them (0 when nothing can be
    measured), for the images drawn ``counts`` times each (None = every image once)."""
    counts = identity_counts(table.images) if counts is None else counts
    precision = precision_table(table, counts)
    all_t = precision[precision > -1]
    at_50 = precision[0][precision[0] > -1]
    return (float(np.mean(all_t)) if all_t.size else 0.0, float(np.mean(at_50)) if at_50.size else 0.0)


def percentile_interval(values: Sequence[float] | np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` interval of ``values`` (percentile method)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    values = np.asarray(values, np.float64)
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)


@dataclass
class ModelIntervals:
    """A model's bootstrap intervals: mAP and mAP@.5 (0..1), ΔmAP vs the reference in points
    (reference − model, × 100; None for the reference itself or without one)."""

    map: tuple[float, float]
    map50: tuple[float, float]
    delta_map: tuple[float, float] | None = None


@dataclass
class BootstrapResult:
    intervals: dict[str, ModelIntervals]
    images: int
    resamples: int
    confidence: float
    seed: int
    reference: str | None
    seconds: float
    samples: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # name -> [B, 2]
    evaluated: int | None = None  # images evaluated (> images when groups hold several views each)

    def describe(self) -> dict[str, Any]:
        doc = {"method": "percentile bootstrap over images; ΔmAP paired (the same drawn images for "
                         "the float reference and the variant)",
               "resamples": self.resamples, "confidence": self.confidence, "seed": self.seed,
               "images": self.images, "reference": self.reference, "seconds": round(self.seconds, 3)}
        if self.evaluated is not None and self.evaluated != self.images:
            doc["method"] = ("percentile bootstrap over images, each drawn with all its views; ΔmAP "
                             "paired (the same drawn images for the float reference and the variant)")
            doc["evaluated"] = self.evaluated
        return doc


def bootstrap_intervals(tables: Mapping[str, MatchTable], *, reference: str | None = None,
                        resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
                        seed: int = 0, paired: bool = True, groups: np.ndarray | None = None) -> BootstrapResult:
    """mAP, mAP@.5 and (with ``reference``) ΔmAP intervals for every model in ``tables`` (all
    evaluated on the same images, in the same order). ``paired=False`` draws the reference's
    images independently of each variant's (for comparison only: it ignores the pairing and
    gives wider ΔmAP intervals on correlated models). ``groups`` (int [images], ids 0..G-1):
    images that belong together (the views of one photo) are drawn together: the bootstrap
    draws G groups with replacement and every image of a drawn group counts as often as it."""
    start = time.perf_counter()
    sizes = {t.images for t in tables.values()}
    if len(sizes) != 1:
        raise ValueError(f"bootstrap: models were evaluated on different numbers of images {sorted(sizes)}")
    if reference is not None and reference not in tables:
        raise ValueError(f"bootstrap reference {reference!r} is not among {sorted(tables)}")
    evaluated = sizes.pop()
    group_of = _group_index(groups, evaluated)
    n = int(group_of.max()) + 1
    counts = resample_counts(n, resamples, seed)[:, group_of]
    samples = {name: np.array([average_precision(table, c) for c in counts]) for name, table in tables.items()}
    ref_unpaired = None
    if reference is not None and not paired:
        other = resample_counts(n, resamples, seed + 1)[:, group_of]
        ref_unpaired = np.array([average_precision(tables[reference], c) for c in other])
    intervals = {}
    for name, values in samples.items():
        delta = None
        if reference is not None and name != reference:
            ref = samples[reference] if paired else ref_unpaired
            delta = percentile_interval((ref[:, 0] - values[:, 0]) * 100.0, confidence)
        intervals[name] = ModelIntervals(map=percentile_interval(values[:, 0], confidence),
                                         map50=percentile_interval(values[:, 1], confidence), delta_map=delta)
    if reference is not None:
        intervals[reference].delta_map = (0.0, 0.0)
    return BootstrapResult(intervals=intervals, images=n, resamples=int(resamples), confidence=float(confidence),
                           seed=int(seed), reference=reference, seconds=time.perf_counter() - start,
                           samples=samples, evaluated=evaluated)


def _group_index(groups: np.ndarray | None, images: int) -> np.ndarray:
    """``groups`` checked (one id per image, every id 0..G-1 used); None = each image its own."""
    if groups is None:
        return np.arange(images)
    g = np.asarray(groups)
    if g.shape != (images,) or not np.issubdtype(g.dtype, np.integer) or images == 0:
        raise ValueError(f"bootstrap groups: need one integer id per image ({images}), got shape {g.shape} {g.dtype}")
    if g.min() < 0 or len(np.unique(g)) != int(g.max()) + 1:
        raise ValueError(f"bootstrap groups: ids must be 0..G-1 with every id used, got {sorted(set(g.tolist()))[:10]}")
    return g.astype(np.int64)
