"""The evaluation's uncertainty: bootstrap intervals of mAP / mAP@.5 / ΔmAP over images (paired:
the same drawn images for the float reference and every variant; edgeship/detection/bootstrap.py),
and the latency of every variant timed in turns with an interval of its median
(edgeship/detection/latency.py). Works on the core's ModelEval rows (duck-typed)."""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from edgeship.contracts.evaluation import host_busy_text
from edgeship.detection.bootstrap import bootstrap_intervals
from edgeship.detection.latency import (
    LatencyStats,
    OthersMeter,
    host_conditions,
    host_load,
    interleaved_tflite_latency,
    tflite_latency,
)

log = logging.getLogger(__name__)


def add_intervals(models: Mapping[str, Any], reference: str | None, *, resamples: int, confidence: float,
                  seed: int, groups: np.ndarray | None = None,
                  views: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The photos' intervals (:func:`add_accuracy_intervals`) and, when the split was also scored
    with views (``groups``: the photo of every scored image; ``views``: how, views.describe), the
    gate's ΔmAP over them (:func:`add_view_deltas`); report.json ``intervals``."""
    doc = add_accuracy_intervals(models, reference, resamples=resamples, confidence=confidence, seed=seed)
    if groups is not None and views is not None:
        if add_view_deltas(models, reference, groups, resamples=resamples, confidence=confidence, seed=seed):
            doc = {**(doc or {}), "views": views}
    return doc


def add_view_deltas(models: Mapping[str, Any], reference: str | None, groups: np.ndarray, *,
                    resamples: int, confidence: float, seed: int) -> bool:
    """Set ``delta_map_views`` (points) and ``delta_map_views_ci`` (paired bootstrap drawing photos
    with all their views) on every row scored with views; False when the reference was not."""
    scored = {name: row.views_coco for name, row in models.items() if getattr(row, "views_coco", None) is not None}
    if reference not in scored:
        return False
    for name, coco in scored.items():
        models[name].delta_map_views = round((scored[reference].map - coco.map) * 100.0, 4)
    tables = {name: coco.matches for name, coco in scored.items() if coco.matches is not None}
    if int(resamples) > 0 and reference in tables:
        result = bootstrap_intervals(tables, reference=reference, resamples=resamples, confidence=confidence,
                                     seed=seed, groups=groups)
        for name, iv in result.intervals.items():
            if iv.delta_map is not None:
                models[name].delta_map_views_ci = (round(iv.delta_map[0], 4), round(iv.delta_map[1], 4))
        log.info("ΔmAP over %d photos with their views (%d images): %d models in %.1f s", result.images,
                 result.evaluated, len(tables), result.seconds)
    return True


def add_accuracy_intervals(models: Mapping[str, Any], reference: str | None, *, resamples: int,
                           confidence: float, seed: int) -> dict[str, Any] | None:
    """Set ``map_ci``, ``map50_ci`` and ``delta_map_ci`` (points) on every row of ``models`` whose
    val result kept its per-image matches; returns how they were made (report.json
    ``intervals``), or None when ``resamples`` is 0 or nothing kept matches."""
    tables = {name: row.coco.matches for name, row in models.items() if row.coco.matches is not None}
    if int(resamples) <= 0 or not tables:
        return None
    ref = reference if reference in tables else None
    result = bootstrap_intervals(tables, reference=ref, resamples=resamples, confidence=confidence, seed=seed)
    for name, iv in result.intervals.items():
        row = models[name]
        row.map_ci = (round(iv.map[0], 6), round(iv.map[1], 6))
        row.map50_ci = (round(iv.map50[0], 6), round(iv.map50[1], 6))
        if iv.delta_map is not None:
            row.delta_map_ci = (round(iv.delta_map[0], 4), round(iv.delta_map[1], 4))
    log.info("bootstrap intervals: %d models × %d resamples over %d images in %.1f s", len(tables),
             result.resamples, result.images, result.seconds)
    return result.describe()


def add_champion_deltas(models: Mapping[str, Any], champion: Any, *, resamples: int, confidence: float,
                        seed: int, groups: np.ndarray | None = None) -> str:
    """Set ``delta_map_vs_champion`` (champion mAP − row mAP, points) and its paired bootstrap
    interval (the same drawn images for the champion and the row) on every row of ``models``;
    ``champion`` is the champion's row, scored on the same images. When every row and the
    champion were also scored with the photos' views (``views_coco``, ``groups``: the photo of
    each scored image), the delta is over those, drawn by photo, like the gate's ΔmAP vs float.
    Returns what it was computed on: "photos" or "photos and their views"."""
    views = groups is not None and champion.views_coco is not None and all(
        getattr(row, "views_coco", None) is not None for row in models.values())
    coco_of = (lambda row: row.views_coco) if views else (lambda row: row.coco)
    for row in models.values():
        row.delta_map_vs_champion = round((coco_of(champion).map - coco_of(row).map) * 100.0, 4)
    tables = {name: coco_of(row).matches for name, row in models.items() if coco_of(row).matches is not None}
    if int(resamples) > 0 and tables and coco_of(champion).matches is not None:
        key = "\0champion"  # not a variant name (variant names are identifiers)
        result = bootstrap_intervals({**tables, key: coco_of(champion).matches}, reference=key,
                                     resamples=resamples, confidence=confidence, seed=seed,
                                     groups=groups if views else None)
        for name, iv in result.intervals.items():
            if name != key and iv.delta_map is not None:
                models[name].delta_map_vs_champion_ci = (round(iv.delta_map[0], 4), round(iv.delta_map[1], 4))
        log.info("ΔmAP vs the champion: %d models × %d resamples over %d images in %.1f s", len(tables),
                 result.resamples, result.images, result.seconds)
    return "photos and their views" if views else "photos"


def measure_latency(models: Mapping[str, tuple[Any, np.ndarray]], *, threads_n: int, runs: int,
                    warmup: int, blocks: int, confidence: float
                    ) -> tuple[dict[str, LatencyStats], dict[str, LatencyStats], dict[str, Any] | None]:
    """1-thread latency of every .tflite (name -> (path, input)) with the models timed in turns,
    and ``threads_n``-thread latency one model at a time (interpreters with thread pools alive at
    once slow each other down: edgeship/detection/latency.py); and the host's load while the
    1-thread figures were timed (:func:`host_conditions`: ``busy`` = not to be trusted)."""
    if not models:
        return {}, {}, None
    before, others = host_load(), OthersMeter()
    one = interleaved_tflite_latency(models, threads=1, runs=runs, warmup=warmup, blocks=blocks,
                                     confidence=confidence)
    host = host_conditions(before, host_load(), others=others.read())
    if host["busy"]:
        log.warning("latency timed on a busy host (%s): the 1-thread figures are reported but the "
                    "gate will not rank variants by them", host_busy_text(host))
    many = {name: tflite_latency(path, x, threads=threads_n, runs=runs, warmup=warmup, blocks=blocks,
                                 confidence=confidence) for name, (path, x) in models.items()}
    return one, many, host


def latency_method(blocks: int, runs: int, confidence: float) -> str:
    return (f"1 thread: every variant timed in turns ({min(blocks, runs)} rounds of a block of runs each, "
            f"order rotated per round; {runs} timed runs per variant after warm-up); N threads: one "
            f"variant at a time; interval of the median: {confidence:.0%} block bootstrap over "
            f"{min(blocks, runs)} blocks of runs")
