"""Per-layer diagnosis when int8 misses the accuracy budget, and the selective-int8 candidates it
offers the gate without anyone asking.

After the accuracy pass, when the variants include an int8 one (qat_int8, full_int8,
full_int8_pt) and none of them is provably within the budget (the upper bound of its ΔmAP
interval, or its point ΔmAP when there are no intervals, is above it), the evaluation:

1. runs ``tf.lite.experimental.QuantizationDebugger`` on the float model with the same
   calibration images as the quantize step (its recorded count and seed) and ranks every
   quantized layer by its int8 error (edgeship/detection/layer_debug.py): ``diagnosis/layers.*``;
2. builds selective int8 models with the worst 1, 3, 10 layers (``EVALUATE.selective_layers``)
   kept in float, as a variants artifact under ``selective/`` of the evaluation's output (the
   publish step finds a chosen selective variant there);
3. measures them like every other variant (same images, same bootstrap, timed in turns), so the
   gate can pick one; the report says which layers were kept float and what that cost in size
   and latency against full int8.

Plain Python; never imports kfp.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

log = logging.getLogger(__name__)

INT8_SCHEMES = ("qat_int8", "full_int8", "full_int8_pt")
SELECTIVE_DIR = "selective"   # a variants artifact inside the evaluation's output
DIAGNOSIS_DIR = "diagnosis"   # layers.csv / layers.json / layers.md
TOP_LAYERS = 10               # layers named in report.json


def upper_delta(row: Any) -> float | None:
    """The ΔmAP bound the gate judges: the interval's upper end, else the point ΔmAP (points);
    over the photos and their views when the split was scored with views (as the gate does)."""
    views = getattr(row, "delta_map_views", None) is not None
    ci = getattr(row, "delta_map_views_ci" if views else "delta_map_ci", None)
    if ci is not None:
        return float(ci[1])
    delta = getattr(row, "delta_map_views" if views else "delta_map_vs_float", None)
    return float(delta) if delta is not None else None


def missed_int8(rows: Mapping[str, Any], budget: float | None) -> list[str]:
    """The int8 variants to diagnose: all of them when none is provably within ``budget``, else
    none (also none without a budget or without int8 variants)."""
    if budget is None:
        return []
    int8 = [name for name, row in rows.items() if getattr(row, "scheme", None) in INT8_SCHEMES]
    bounds = {name: upper_delta(rows[name]) for name in int8}
    if any(b is not None and b <= budget for b in bounds.values()):
        return []
    return sorted(int8)


@dataclass
class Diagnosis:
    """What the diagnosis found and built (report.json ``diagnosis``)."""

    triggered_by: list[str]
    budget_pt: float
    rank_by: str
    layers: list[dict[str, Any]]          # the worst TOP_LAYERS, worst first
    quantized_layers: int
    calibration: dict[str, Any]
    candidates: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"triggered_by": self.triggered_by, "budget_pt": self.budget_pt, "rank_by": self.rank_by,
                "quantized_layers": self.quantized_layers, "worst_layers": self.layers,
                "calibration": self.calibration, "candidates": self.candidates,
                "seconds": round(self.seconds, 2), "error": self.error,
                "layer_report": f"{DIAGNOSIS_DIR}/layers.md", "variants_dir": SELECTIVE_DIR}


def build_selective(float_model_dir: str | Path, dataset_uri: str, variants_doc: Mapping[str, Any],
                    out_dir: str | Path, *, counts: Sequence[int], triggered_by: list[str],
                    budget_pt: float, labels_file: Path | None) -> tuple[Path, Diagnosis]:
    """Rank the layers and write the selective-int8 variants artifact; returns (its dir, diagnosis)."""
    from edgeship.detection import convert as qz
    from edgeship.detection.layer_debug import LayerDebugger, write_layer_report
    from edgeship.detection.postprocess import PostprocessConfig, detection_module

    started = time.perf_counter()
    loaded = qz.load_model_artifact(float_model_dir)
    record = dict(variants_doc.get("calibration_set") or {})
    num, seed = int(record.get("requested") or record.get("images") or 200), int(record.get("seed") or 0)
    chosen = qz.select_calibration(dataset_uri, loaded.input_size, num, seed=seed,
                                   resize=loaded.config.get("resize", "stretch"))
    if not chosen.images:
        raise ValueError(f"per-layer diagnosis: no calibration images in {dataset_uri} ({chosen.where})")
    rep = qz.representative_dataset(chosen.images)
    cfg = PostprocessConfig(**_postprocess(variants_doc))
    module = detection_module(loaded.model, loaded.anchors, loaded.num_classes, loaded.input_size, cfg)
    debugger = LayerDebugger(lambda: qz.make_converter(module, "fp32", rep), rep)
    stats = debugger.layer_stats()
    out = Path(out_dir)
    write_layer_report(stats, out / DIAGNOSIS_DIR, rank_by=debugger.rank_by)
    diag = Diagnosis(triggered_by=triggered_by, budget_pt=budget_pt, rank_by=debugger.rank_by,
                     layers=[{"tensor_name": s.name, "op": s.op, "score": _num(s.score)} for s in stats[:TOP_LAYERS]],
                     quantized_layers=len(stats),
                     calibration={k: v for k, v in chosen.record.items() if k != "image_ids"})
    sel = out / SELECTIVE_DIR
    sel.mkdir(parents=True, exist_ok=True)
    entries = []
    for k in sorted({min(int(c), len(stats)) for c in counts if int(c) > 0}):
        float_layers = [s.name for s in stats[:k]]
        name = f"selective_int8_f{k}"
        path = sel / f"{name}.tflite"
        path.write_bytes(debugger.quantize(float_layers))
        entries.append(_entry(name, path, float_layers, cfg, loaded, diag.calibration))
        diag.candidates.append({"name": name, "float_layers": float_layers})
        log.info("diagnosis: %s keeps %d layer(s) float: %s", name, k, ", ".join(float_layers))
    _write_index(sel, entries, variants_doc, labels_file)
    diag.seconds = time.perf_counter() - started
    return sel, diag


def _postprocess(variants_doc: Mapping[str, Any]) -> dict[str, Any]:
    """The fused op's attributes of the int8 variants (so the candidates post-process alike)."""
    for entry in variants_doc.get("variants") or []:
        if entry.get("scheme") in INT8_SCHEMES and isinstance(entry.get("postprocess"), dict):
            pp = dict(entry["postprocess"])
            pp["box_scales"] = tuple(pp.get("box_scales", (10.0, 10.0, 5.0, 5.0)))
            return pp
    return {}


def _entry(name: str, path: Path, float_layers: list[str], cfg: Any, loaded: Any,
           calibration: Mapping[str, Any]) -> dict[str, Any]:
    from edgeship.detection.verify import inspect_tflite

    spec = inspect_tflite(path, name)
    return {"name": name, "source": "float", "scheme": "selective_int8", "file": path.name,
            "size_bytes": path.stat().st_size,
            "input": {**{k: v for k, v in spec["input"].items() if k != "index"},
                      "resize": loaded.config.get("resize", "stretch")},
            "outputs": {k: {"index": v["index"], "name": v["name"], "position": v["position"]}
                        for k, v in spec["outputs"].items()},
            "postprocess": cfg.to_dict(), "float_layers": list(float_layers),
            "calibration": dict(calibration)}


def _write_index(sel: Path, entries: list[dict[str, Any]], variants_doc: Mapping[str, Any],
                 labels_file: Path | None) -> None:
    from edgeship.contracts import variants as variants_contract

    if labels_file is not None and labels_file.is_file():
        shutil.copyfile(labels_file, sel / "labels.txt")
    doc = {"variants": entries, "model": variants_doc.get("model"),
           "calibration_set": variants_doc.get("calibration_set"),
           "made_by": "evaluate: per-layer diagnosis (selective int8)"}
    variants_contract.save_index(doc, sel)


class DiagnosisHook:
    """The ``diagnose`` callable of :func:`evaluate_examples` for one artifact; keeps what it found."""

    def __init__(self, variants_dir: str | os.PathLike, dataset_uri: str, out_dir: str | os.PathLike,
                 float_model_dir: str | os.PathLike, budget: float) -> None:
        self.args = (variants_dir, dataset_uri, out_dir, float_model_dir)
        self.budget = budget
        self.found: Diagnosis | None = None

    def __call__(self, rows: dict[str, Any]) -> list[Any]:
        from components.evaluate.settings import EVALUATE
        from edgeship.base import progress as step_progress
        from edgeship.contracts.variants import load_variants, read_variants

        missed = missed_int8(rows, self.budget)
        if not missed:
            return []
        variants_dir, dataset_uri, out_dir, float_model_dir = self.args
        log.warning("no int8 variant is within the %.2f pt budget (%s): per-layer diagnosis and "
                    "selective int8 candidates", self.budget, ", ".join(missed))
        step_progress.emit(phase="int8 missed the budget: per-layer diagnosis (QuantizationDebugger)")
        try:
            sel, self.found = build_selective(
                float_model_dir, dataset_uri, read_variants(variants_dir), out_dir,
                counts=EVALUATE.selective_layers, triggered_by=missed, budget_pt=self.budget,
                labels_file=Path(variants_dir) / "labels.txt")
            return load_variants(sel)[0]
        except Exception as exc:  # noqa: BLE001 - the diagnosis is an offer: its failure is reported, not fatal
            log.warning("per-layer diagnosis failed, the gate sees the variants without it: %s: %s",
                        type(exc).__name__, exc)
            self.found = Diagnosis(triggered_by=missed, budget_pt=self.budget, rank_by="", layers=[],
                                   quantized_layers=0, calibration={},
                                   error=f"{type(exc).__name__}: {str(exc)[:500]}")
            return []


def hook_for(variants_dir: str | os.PathLike, dataset_uri: str, out_dir: str | os.PathLike,
                    float_model_dir: str | os.PathLike | None, accuracy_budget: Any) -> DiagnosisHook | None:
    """The hook when a budget is set and the float model is given (the debugger needs it)."""
    from edgeship.contracts.budget import parse_budget

    budget = parse_budget(accuracy_budget)
    if budget is None or float_model_dir is None:
        return None
    return DiagnosisHook(variants_dir, dataset_uri, out_dir, float_model_dir, budget)


def costs(diag: Diagnosis, rows: Mapping[str, Any]) -> None:
    """Fill every candidate's measured cost against full int8 (size, 1-thread latency) and its
    ΔmAP (with interval) into ``diag.candidates``."""
    base = rows.get("full_int8")
    for cand in diag.candidates:
        row = rows.get(cand["name"])
        if row is None:
            continue
        lat = row.latency_1.median if row.latency_1 is not None else None
        cand.update({"size_bytes": row.size_bytes, "delta_map_pts": row.delta_map_vs_float,
                     "delta_map_ci": list(row.delta_map_ci) if row.delta_map_ci else None,
                     "delta_map_views": row.delta_map_views,
                     "delta_map_views_ci": list(row.delta_map_views_ci) if row.delta_map_views_ci else None,
                     "latency_ms_1thread": lat, "map": row.map})
        if base is not None:
            cand["size_vs_full_int8"] = _ratio(row.size_bytes, base.size_bytes)
            base_lat = base.latency_1.median if base.latency_1 is not None else None
            cand["latency_vs_full_int8"] = _ratio(lat, base_lat)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(float(a) / float(b), 4) if a is not None and b else None


def _num(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None
