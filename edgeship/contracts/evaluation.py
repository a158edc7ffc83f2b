"""The evaluation artifact's report (``report.json``), as evaluate writes it and select, publish and
the main job read it (docs/contracts.md "Evaluation artifact").

Rows are per model (``variants[name]``, and ``float_keras``), each with ``map``, ``map50``,
``per_class_ap``, ``delta_map_vs_float`` (points, + = accuracy lost), ``size_bytes`` and
``latency_ms`` = {``threads_1``: {median, p90, ci}, ``threads_N``: {...}, N, runs, warmup}, and the
intervals: ``map_ci`` / ``map50_ci`` ([low, high], 0..1), ``delta_map_ci`` ([low, high], points),
``latency_ms.threads_1.ci`` ([low, high] ms); the top-level ``intervals`` says how they were made.
:class:`EvaluationReport` is the one reader: it validates the document and answers the questions
the readers ask (a row, its 1-thread latency, the float reference), so no other module spells the
keys.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

FILE_NAME = "report.json"
FORMAT_VERSION = 1
KEYS = ("format_version", "variants", "float_keras", "float_reference", "dataset_fingerprint")
ROW_KEYS = ("size_bytes", "map", "map50", "per_class_ap", "delta_map_vs_float", "latency_ms")
LATENCY_1T = "threads_1"
LATENCY_NT = "threads_N"
FLOAT_KERAS = "float_keras"
# intervals (bootstrap over images; latency: block bootstrap of the median), each [low, high]
MAP_CI = "map_ci"
MAP50_CI = "map50_ci"
DELTA_MAP_CI = "delta_map_ci"
CI_KEYS = (MAP_CI, MAP50_CI, DELTA_MAP_CI)
# the gate's ΔmAP on a small val split: over the photos and their views (mirror, centre crop),
# resampled by photo; ``intervals.views`` says how (components/evaluate/views.py)
DELTA_MAP_VIEWS = "delta_map_views"
DELTA_MAP_VIEWS_CI = "delta_map_views_ci"
INTERVALS = "intervals"  # top level: method, resamples, confidence, seed, images, latency method
# top level: the host's load while the 1-thread latencies were timed (load averages, CPUs, busy):
# on a busy host the gate does not rank variants by latency (components/select/rules.py)
LATENCY_HOST = "latency_host"
CALIBRATION_SET = "calibration_set"  # per row: the int8 calibration images (quantize's record)
# top level: the channel's champion (the model serving now) re-scored on the same images, or why
# not: {"version", "source", "rescored": bool, "reason", + a row's keys when rescored}; per row:
# champion mAP − this row's mAP (points, + = worse than the champion) and its paired interval
CHAMPION = "champion"
DELTA_MAP_VS_CHAMPION = "delta_map_vs_champion"
DELTA_MAP_VS_CHAMPION_CI = "delta_map_vs_champion_ci"


def interval(row: dict | None, key: str) -> tuple[float, float] | None:
    """A row's interval ``key`` (MAP_CI, MAP50_CI, DELTA_MAP_CI) as (low, high), None when absent."""
    value = row.get(key) if isinstance(row, dict) else None
    if not isinstance(value, (list, tuple)) or len(value) != 2 or any(v is None for v in value):
        return None
    return float(value[0]), float(value[1])


def gate_delta(row: dict | None) -> tuple[float | None, tuple[float, float] | None, bool]:
    """The ΔmAP (points) and interval the gate judges a row by: over the photos and their views
    when the report measured them (third item True), else on the photos alone."""
    if not isinstance(row, dict):
        return None, None, False
    views = row.get(DELTA_MAP_VIEWS)
    if isinstance(views, (int, float)) and not isinstance(views, bool):
        return float(views), interval(row, DELTA_MAP_VIEWS_CI), True
    delta = row.get("delta_map_vs_float")
    return (float(delta) if isinstance(delta, (int, float)) and not isinstance(delta, bool) else None,
            interval(row, DELTA_MAP_CI), False)


def champion_delta(report: dict | None, row_name: str, version: str | None) -> tuple[dict, float, tuple[float, float] | None] | None:
    """(champion record, ΔmAP vs champion in points, its paired interval) for ``row_name`` when
    the report re-scored champion ``version`` on its images; None otherwise (no champion, another
    version, not re-scored, or the row lacks the figure)."""
    record = report.get(CHAMPION) if isinstance(report, dict) else None
    if not isinstance(record, dict) or not record.get("rescored") or record.get("version") != version:
        return None
    row = (report.get("variants") or {}).get(row_name)
    delta = row.get(DELTA_MAP_VS_CHAMPION) if isinstance(row, dict) else None
    if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not math.isfinite(delta):
        return None
    return record, float(delta), interval(row, DELTA_MAP_VS_CHAMPION_CI)


def latency_interval(row: dict | None, threads: str = LATENCY_1T) -> tuple[float, float] | None:
    """A row's interval of the median latency in ms, None when absent (older reports)."""
    try:
        value = row["latency_ms"][threads]["ci"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2 or any(v is None for v in value):
        return None
    return float(value[0]), float(value[1])


def latency_median(row: dict | None, threads: str = LATENCY_1T) -> float | None:
    """A row's median latency in ms (``threads`` = LATENCY_1T or LATENCY_NT), None when absent."""
    try:
        value = row["latency_ms"][threads]["median"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    return float(value) if value is not None else None


@dataclass
class EvaluationReport:
    """report.json, validated. ``doc`` keeps the whole document (extra sections included)."""

    doc: dict[str, Any]
    path: Path | None = None

    @property
    def variants(self) -> dict[str, dict]:
        return self.doc["variants"]

    @property
    def float_keras(self) -> dict | None:
        row = self.doc.get(FLOAT_KERAS)
        return row if isinstance(row, dict) else None

    @property
    def dataset_fingerprint(self) -> str | None:
        return self.doc.get("dataset_fingerprint")

    def row(self, name: str) -> dict:
        """The row of variant ``name``; ValueError naming the file and the variants it has."""
        if name not in self.variants:
            raise ValueError(f"variant {name!r} has no row in {self.path or FILE_NAME} "
                             f"(has {sorted(self.variants)})")
        return self.variants[name]

    def latency_ms(self, name: str, threads: str = LATENCY_1T) -> float | None:
        return latency_median(self.row(name), threads)

    @property
    def images(self) -> int | None:
        """How many images of the split were evaluated (None in reports that do not say)."""
        value = self.doc.get("images")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def intervals(self) -> dict:
        """How the intervals were made (method, resamples, confidence, ...); {} when absent."""
        value = self.doc.get(INTERVALS)
        return value if isinstance(value, dict) else {}

    def float_reference(self) -> tuple[str, float]:
        """(name, mAP) of the float reference: the Keras float model, else the fp32 variant."""
        if self.float_keras is not None and self.float_keras.get("map") is not None:
            return FLOAT_KERAS, float(self.float_keras["map"])
        fp32 = self.variants.get("fp32")
        if isinstance(fp32, dict) and fp32.get("map") is not None:
            return "fp32", float(fp32["map"])
        raise ValueError(f"{self.path or FILE_NAME} has no float reference: neither 'float_keras' "
                         "nor the 'fp32' variant has a 'map'")

    def validate(self) -> "EvaluationReport":
        where = str(self.path or FILE_NAME)
        if not isinstance(self.doc, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(self.doc).__name__}")
        variants = self.doc.get("variants")
        if not isinstance(variants, dict):
            raise ValueError(f"{where}: 'variants' must be an object of rows by variant name")
        for name, row in variants.items():
            if not isinstance(row, dict):
                raise ValueError(f"{where}: variants[{name!r}] must be an object, got {row!r}")
            for key in ("map", "map50", "delta_map_vs_float", DELTA_MAP_VS_CHAMPION):
                value = row.get(key)
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                          or not math.isfinite(value)):
                    raise ValueError(f"{where}: variants[{name!r}].{key} must be a finite number, "
                                     f"got {value!r}")
            for key in (*CI_KEYS, DELTA_MAP_VS_CHAMPION_CI):
                _check_interval(row.get(key), f"{where}: variants[{name!r}].{key}")
        return self


def _check_interval(value: Any, where: str) -> None:
    if value is None:
        return
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
          and value[0] <= value[1])
    if not ok:
        raise ValueError(f"{where} must be [low, high] finite numbers with low <= high, got {value!r}")


def save(doc: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``doc`` as report.json in ``out_dir`` (strict JSON: no NaN)."""
    path = Path(out_dir) / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    EvaluationReport(doc, path).validate()
    path.write_text(json.dumps(doc, indent=2, allow_nan=False), encoding="utf-8")
    return path


def load(evaluation_dir: str | Path) -> EvaluationReport:
    """report.json of an evaluation artifact (a directory, or the file itself), validated."""
    path = Path(evaluation_dir)
    if path.is_dir() or path.suffix != ".json":
        path = path / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"evaluation artifact has no {FILE_NAME}: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    return EvaluationReport(doc, path).validate()


def host_busy_text(host: Mapping[str, Any]) -> str:
    """Why a report's ``latency_host`` (edgeship.detection.latency.host_conditions) says busy, in
    words: the report's and the gate's."""
    if host.get("others_cpus") is not None:
        return (f"other processes kept {host['others_cpus']:.2f} of {host.get('cpus', '?')} CPUs busy while "
                f"it was timed, {host.get('others_per_cpu')} per CPU > {host.get('threshold_others_per_cpu')}")
    loads = [x for x in (host.get("load_1min_before"), host.get("load_1min_after")) if x is not None]
    return (f"load average {max(loads, default=0.0):.2f} on {host.get('cpus', '?')} CPUs, "
            f"{host.get('load_per_cpu', '?')} per CPU > {host.get('threshold_load_per_cpu', '?')}")
