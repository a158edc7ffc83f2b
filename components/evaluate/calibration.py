"""Confidence calibration of a detector and its drift against the float model.

- **ECE** (expected calibration error) of a detector's detections: every detection with a score
  >= ``min_score`` is a *hit* when it matches a not-yet-matched ground-truth object of the same
  class with IoU >= 0.5 (greedy, highest score first, per image, as COCO does). Scores are binned
  into ``bins`` equal-width bins; ECE = Σ_b (n_b / N) · |mean score_b − hit rate_b|.
- **Score shift** against the float model: detections of the variant and of the float model on
  the same image are matched (same class, IoU >= 0.5, greedy by the variant's score); the shift is
  the mean of (variant score − float score) over the matched pairs. Quantization that changes how
  confident the model is shows up here even when mAP (a ranking metric) barely moves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgeship.detection.coco import Detections
from edgeship.detection.streamed import truth_of


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes a [N, 4] and b [M, 4] (ymin, xmin, ymax, xmax) → [N, M]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    y0 = np.maximum(a[:, None, 0], b[None, :, 0])
    x0 = np.maximum(a[:, None, 1], b[None, :, 1])
    y1 = np.minimum(a[:, None, 2], b[None, :, 2])
    x1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _greedy_match(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, ref_boxes: np.ndarray,
                  ref_labels: np.ndarray, iou_threshold: float) -> list[int]:
    """For each detection (in the given order's score ranking) the matched reference index or -1."""
    order = np.argsort(-scores, kind="stable")
    ious = iou_matrix(boxes, ref_boxes)
    taken = np.zeros(len(ref_boxes), bool)
    match = [-1] * len(boxes)
    for i in order:
        if len(ref_boxes) == 0:
            break
        candidates = np.where((~taken) & (ref_labels == labels[i]) & (ious[i] >= iou_threshold))[0]
        if len(candidates):
            j = candidates[np.argmax(ious[i, candidates])]
            taken[j] = True
            match[i] = int(j)
    return match


@dataclass(frozen=True)
class Calibration:
    """ECE of a detector on a set, how many detections it counted, and their mean score and hit rate."""

    ece: float
    detections: int
    mean_score: float
    hit_rate: float


def expected_calibration_error(examples: Sequence[Any], detections: Sequence[Detections], *,
                               bins: int = 10, min_score: float = 0.1,
                               iou_threshold: float = 0.5) -> Calibration:
    """ECE of ``detections`` (one per example) against the examples' ground truth.

    With no detection at or above ``min_score`` the ECE is 0 over 0 detections (reported as such).
    """
    if bins < 1:
        raise ValueError(f"calibration bins must be >= 1, got {bins!r}")
    scores_all, hits_all = [], []
    for ex, det in zip(truth_of(examples), detections, strict=True):
        keep = det.scores >= min_score
        boxes, labels, scores = det.boxes[keep], det.labels[keep], det.scores[keep]
        match = _greedy_match(boxes, labels, scores, np.asarray(ex.boxes, np.float32).reshape(-1, 4),
                              np.asarray(ex.labels).reshape(-1), iou_threshold)
        scores_all.extend(scores.tolist())
        hits_all.extend(m >= 0 for m in match)
    if not scores_all:
        return Calibration(ece=0.0, detections=0, mean_score=0.0, hit_rate=0.0)
    scores = np.clip(np.asarray(scores_all, np.float64), 0.0, 1.0)
    hits = np.asarray(hits_all, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(scores[in_bin].mean() - hits[in_bin].mean())
    return Calibration(ece=float(ece), detections=len(scores), mean_score=float(scores.mean()),
                       hit_rate=float(hits.mean()))


@dataclass(frozen=True)
class ScoreShift:
    """Mean (variant − float) score and mean |difference| over ``matched`` detection pairs, and the
    share of the float model's detections (score >= min_score) that the variant matched."""

    mean: float
    mean_abs: float
    matched: int
    match_rate: float


def score_shift(variant: Sequence[Detections], reference: Sequence[Detections], *,
                min_score: float = 0.1, iou_threshold: float = 0.5) -> ScoreShift:
    """Shift in scores of detections matched between a variant and the float reference."""
    diffs: list[float] = []
    ref_total = 0
    for det, ref in zip(variant, reference, strict=True):
        keep = det.scores >= min_score
        rkeep = ref.scores >= min_score
        ref_total += int(rkeep.sum())
        boxes, labels, scores = det.boxes[keep], det.labels[keep], det.scores[keep]
        match = _greedy_match(boxes, labels, scores, ref.boxes[rkeep], ref.labels[rkeep], iou_threshold)
        ref_scores = ref.scores[rkeep]
        diffs.extend(float(scores[i] - ref_scores[j]) for i, j in enumerate(match) if j >= 0)
    if not diffs:
        return ScoreShift(mean=0.0, mean_abs=0.0, matched=0, match_rate=0.0)
    d = np.asarray(diffs)
    return ScoreShift(mean=float(d.mean()), mean_abs=float(np.abs(d).mean()), matched=len(d),
                      match_rate=float(len(d) / ref_total) if ref_total else 0.0)
