"""The evaluation's uncertainty: bootstrap intervals of mAP / mAP@.5 / ΔmAP over images (paired:
the same drawn images for the float reference and every variant; edgeship/detection/bootstrap.py),
and the latency of every variant timed in turns with an interval of its median
(edgeship/detection/latency.py). Works on the core's ModelEval rows (duck-typed)."""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from edgeship.detection.bootstrap import bootstrap_intervals
from edgeship.detection.latency import LatencyStats, interleaved_tflite_latency, tflite_latency

log = logging.getLogger(__name__)


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


def measure_latency(models: Mapping[str, tuple[Any, np.ndarray]], *, threads_n: int, runs: int,
                    warmup: int, blocks: int, confidence: float
                    ) -> tuple[dict[str, LatencyStats], dict[str, LatencyStats]]:
    """1-thread latency of every .tflite (name -> (path, input)) with the models timed in turns,
    and ``threads_n``-thread latency one model at a time (interpreters with thread pools alive at
    once slow each other down: edgeship/detection/latency.py)."""
    if not models:
        return {}, {}
    one = interleaved_tflite_latency(models, threads=1, runs=runs, warmup=warmup, blocks=blocks,
                                     confidence=confidence)
    many = {name: tflite_latency(path, x, threads=threads_n, runs=runs, warmup=warmup, blocks=blocks,
                                 confidence=confidence) for name, (path, x) in models.items()}
    return one, many


def latency_method(blocks: int, runs: int, confidence: float) -> str:
    return (f"1 thread: every variant timed in turns ({min(blocks, runs)} rounds of a block of runs each, "
            f"order rotated per round; {runs} timed runs per variant after warm-up); N threads: one "
            f"variant at a time; interval of the median: {confidence:.0%} block bootstrap over "
            f"{min(blocks, runs)} blocks of runs")
