"""What the evaluation keeps from its inputs besides the measurements (the autoquant search, the
int8 calibration record of every variant, the variants quantize set aside) and the flat figures it logs as KFP Metrics."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from edgeship.contracts import evaluation
from edgeship.contracts.evaluation import FLOAT_KERAS, LATENCY_1T, LATENCY_NT, latency_median


def autoquant_search(variants_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The part of an autoquant artifact's autoquant.json the evaluation report keeps (budget,
    chosen, stop reason, every candidate's row); None for a quantize artifact."""
    from edgeship.contracts.autoquant import load_result

    if not (Path(variants_dir) / "autoquant.json").is_file():
        return None
    doc = load_result(variants_dir)
    keep = ("budget_pt", "max_latency_ms", "max_size_bytes", "reference_metric", "chosen", "met_budget",
            "partial", "stop_reason", "message", "seconds")
    rows = [{k: c.get(k) for k in ("name", "scheme", "float_layers", "size_bytes", "latency_ms", "metric",
                                    "delta_pt", "fits", "misses", "error")}
            for c in doc.get("candidates") or []]
    return {**{k: doc.get(k) for k in keep}, "candidates": rows}


def set_aside(variants_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The variants quantize set aside (variants.json "skipped": a parity miss, a failed
    experimental scheme), each as name, stage and error: not evaluated, never published."""
    from edgeship.contracts.variants import read_variants

    return [{k: str(entry.get(k) or "") for k in ("name", "stage", "error")}
            for entry in read_variants(variants_dir).get("skipped") or [] if isinstance(entry, dict)]


def calibration_records(variants_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Per variant, quantize's record of the images its int8 ranges were calibrated on
    (variants.json entry ``calibration``: images, splits, seed, ...); variants without one
    (float schemes) are left out."""
    from edgeship.contracts.variants import read_variants

    out = {}
    for entry in read_variants(variants_dir)["variants"]:
        record = entry.get("calibration")
        if isinstance(record, dict):
            out[str(entry["name"])] = dict(record)
    return out


def key_metrics(report: Any) -> dict[str, float]:
    """Flat {name: number} of the figures worth logging as KFP Metrics, per model, with the
    bounds of their intervals (``_lo`` / ``_hi``)."""
    doc: Mapping[str, Any] = report.to_dict() if hasattr(report, "to_dict") else report
    out: dict[str, float] = {}
    rows = dict(doc.get("variants") or {})
    if doc.get(FLOAT_KERAS):
        rows[FLOAT_KERAS] = doc[FLOAT_KERAS]
    for name, row in rows.items():
        for key, value in (("map", row.get("map")), ("map50", row.get("map50")),
                           ("delta_map_pt", row.get("delta_map_vs_float")),
                           ("size_kb", (row.get("size_bytes") or 0) / 1024 if row.get("size_bytes") else None),
                           ("size_x_fp32", row.get("size_ratio_vs_fp32")),
                           ("latency_1t_ms", latency_median(row, LATENCY_1T)),
                           ("latency_nt_ms", latency_median(row, LATENCY_NT)),
                           ("latency_x_fp32", row.get("latency_ratio_vs_fp32")),
                           ("ece", (row.get("calibration") or {}).get("ece"))):
            if value is not None:
                out[f"{name}_{key}"] = float(value)
        bounds = (("map", evaluation.interval(row, evaluation.MAP_CI)),
                  ("map50", evaluation.interval(row, evaluation.MAP50_CI)),
                  ("delta_map_pt", evaluation.interval(row, evaluation.DELTA_MAP_CI)),
                  ("latency_1t_ms", evaluation.latency_interval(row, LATENCY_1T)))
        for key, pair in bounds:
            if pair is not None:
                out[f"{name}_{key}_lo"], out[f"{name}_{key}_hi"] = float(pair[0]), float(pair[1])
    return out
