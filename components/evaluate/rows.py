"""The evaluation's rows and report: everything measured for one model (:class:`ModelEval`) and
for one evaluation (:class:`EvalReport`), as report.json writes them (docs/contracts.md
"Evaluation artifact"). Plain data; the measuring is in core.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.evaluate import calibration as calib
from edgeship.contracts import evaluation
from edgeship.contracts.evaluation import LATENCY_1T, LATENCY_NT
from edgeship.detection.coco import CocoResult
from edgeship.detection.latency import LatencyStats

REPORT_FORMAT_VERSION = 1
FLOAT_KERAS = "float_keras"


# --------------------------------------------------------------------------- results

@dataclass
class ModelEval:
    """Everything measured for one model (a variant or the float Keras model)."""

    name: str
    coco: CocoResult
    size_bytes: int | None = None
    file: str | None = None
    scheme: str | None = None
    source: str | None = None
    input_dtype: str | None = None
    latency_1: LatencyStats | None = None
    latency_n: LatencyStats | None = None
    robustness: dict[str, CocoResult] = field(default_factory=dict)
    calibration: calib.Calibration | None = None
    shift: calib.ScoreShift | None = None
    delta_map_vs_float: float | None = None  # (float − this) × 100, mAP points; + = accuracy lost
    size_ratio_vs_fp32: float | None = None
    latency_ratio_vs_fp32: float | None = None
    map_ci: tuple[float, float] | None = None    # bootstrap interval over images, 0..1
    map50_ci: tuple[float, float] | None = None
    delta_map_ci: tuple[float, float] | None = None  # paired bootstrap interval, points
    calibration_set: dict[str, Any] | None = None  # quantize's record of the int8 calibration images
    views_coco: CocoResult | None = None  # the split's photos with their views (small splits: views.py)
    delta_map_views: float | None = None  # the gate's ΔmAP over them, points
    delta_map_views_ci: tuple[float, float] | None = None
    delta_map_vs_champion: float | None = None  # (champion − this) × 100 on the same images, points
    delta_map_vs_champion_ci: tuple[float, float] | None = None  # paired bootstrap interval

    @property
    def map(self) -> float:
        return self.coco.map

    @property
    def map50(self) -> float:
        return self.coco.map50

    def to_dict(self) -> dict[str, Any]:
        """The row of report.json for this model (contract keys first, then extras)."""
        latency = None
        if self.latency_1 is not None:
            latency = {LATENCY_1T: _latency_row(self.latency_1),
                       LATENCY_NT: _latency_row(self.latency_n) if self.latency_n else None,
                       "N": self.latency_n.threads if self.latency_n else None,
                       "runs": self.latency_1.runs, "warmup": self.latency_1.warmup}
        cal = None
        if self.calibration is not None:
            cal = {"ece": self.calibration.ece,
                   "score_shift": self.shift.mean if self.shift is not None else None,
                   "score_shift_abs": self.shift.mean_abs if self.shift is not None else None,
                   "matched_with_float": self.shift.matched if self.shift is not None else None,
                   "match_rate_with_float": self.shift.match_rate if self.shift is not None else None,
                   "detections": self.calibration.detections,
                   "mean_score": self.calibration.mean_score, "hit_rate": self.calibration.hit_rate}
        return {
            "size_bytes": self.size_bytes,
            "map": self.coco.map,
            "map50": self.coco.map50,
            "per_class_ap": dict(self.coco.per_class_ap),
            "delta_map_vs_float": self.delta_map_vs_float,
            "latency_ms": latency,
            "robustness": {k: {"map": v.map, "map50": v.map50} for k, v in self.robustness.items()},
            "calibration": cal,
            "per_class_ap50": dict(self.coco.per_class_ap50),
            "size_ratio_vs_fp32": self.size_ratio_vs_fp32,
            "latency_ratio_vs_fp32": self.latency_ratio_vs_fp32,
            "file": self.file, "scheme": self.scheme, "source": self.source,
            "input_dtype": self.input_dtype, "detections": self.coco.detections,
            evaluation.MAP_CI: _pair(self.map_ci), evaluation.MAP50_CI: _pair(self.map50_ci),
            evaluation.DELTA_MAP_CI: _pair(self.delta_map_ci),
            evaluation.CALIBRATION_SET: self.calibration_set,
            evaluation.DELTA_MAP_VIEWS: self.delta_map_views, evaluation.DELTA_MAP_VIEWS_CI: _pair(self.delta_map_views_ci),
            evaluation.DELTA_MAP_VS_CHAMPION: self.delta_map_vs_champion,
            evaluation.DELTA_MAP_VS_CHAMPION_CI: _pair(self.delta_map_vs_champion_ci),
        }


def _pair(value: tuple[float, float] | None) -> list[float] | None:
    return [float(value[0]), float(value[1])] if value is not None else None


def _latency_row(stats: LatencyStats) -> dict[str, Any]:
    return {"median": stats.median, "p90": stats.p90, "ci": _pair(stats.ci)}


@dataclass
class EvalReport:
    """The evaluation of every variant; ``to_dict()`` is report.json."""

    dataset_fingerprint: str | None
    split: str
    images: int
    objects: int
    classes: list[str]
    variants: dict[str, ModelEval]
    float_keras: ModelEval | None
    float_reference: str | None
    latency_runs: int
    threads_n: int
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    autoquant: dict[str, Any] | None = None  # the search behind an autoquant variants artifact
    diagnosis: dict[str, Any] | None = None  # the per-layer diagnosis, when int8 missed the budget
    intervals: dict[str, Any] | None = None  # how the intervals were made (report.json "intervals")
    latency_host: dict[str, Any] | None = None  # the host's load while latency was timed
    set_aside: list[dict[str, Any]] = field(default_factory=list)  # quantize's skipped variants
    champion: dict[str, Any] | None = None  # the channel's champion re-scored here, or why not

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "format_version": REPORT_FORMAT_VERSION,
            "dataset_fingerprint": self.dataset_fingerprint,
            "split": self.split,
            "images": self.images,
            "objects": self.objects,
            "classes": list(self.classes),
            "float_reference": self.float_reference,
            "latency_runs": self.latency_runs,
            LATENCY_NT: self.threads_n,
            "variants": {name: row.to_dict() for name, row in self.variants.items()},
            "float_keras": self.float_keras.to_dict() if self.float_keras is not None else None,
            evaluation.INTERVALS: self.intervals,
            evaluation.LATENCY_HOST: self.latency_host,
            "set_aside": list(self.set_aside),
            evaluation.CHAMPION: self.champion,
        }
        if self.autoquant is not None:
            doc["autoquant"] = self.autoquant
        if self.diagnosis is not None:
            doc["diagnosis"] = self.diagnosis
        return doc
