"""The evaluate step: measure every converted variant (and the float Keras model) honestly.

For the float model and every .tflite in the variants artifact, run the model *itself* (LiteRT for
the .tflite files) on the held-out split and compute:

- COCO mAP@[.5:.95], mAP@.5 and per-class AP (pycocotools, `coco.py`);
- file size, and its ratio to the fp32 .tflite;
- latency with LiteRT/XNNPACK at 1 thread and at all threads (`latency.py`);
- mAP on robustness slices of the split: dark, bright, blurred, occluded (`robustness.py`);
- calibration: ECE, and the score shift of detections matched with the float model
  (`calibration.py`).

Writes report.json (docs/contracts.md "Evaluation artifact"), report.md, report.html and
tradeoff.png into the output directory. Plain Python; never imports kfp.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from components.evaluate import calibration as calib
from components.evaluate.report import write_reports
from components.evaluate.robustness import SLICES, make_slices
from components.evaluate.settings import EVALUATE
from edgeship.contracts import evaluation
from edgeship.contracts.evaluation import LATENCY_1T, LATENCY_NT, latency_median
from edgeship.contracts.variants import VariantSpec, load_variants
from edgeship.detection.coco import (
    CocoResult,
    Detections,
    class_names_by_id,
    coco_evaluate,
    validate_examples,
)
from edgeship.detection.latency import LatencyStats, all_threads, tflite_latency
from edgeship.detection.runners import (
    check_label_maps,
    load_examples,
    run_detector,
)

log = logging.getLogger(__name__)

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
            latency = {LATENCY_1T: {"median": self.latency_1.median, "p90": self.latency_1.p90},
                       LATENCY_NT: ({"median": self.latency_n.median, "p90": self.latency_n.p90}
                                     if self.latency_n else None),
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
        }


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
        }
        if self.autoquant is not None:
            doc["autoquant"] = self.autoquant
        return doc


# --------------------------------------------------------------------------- inputs













# --------------------------------------------------------------------------- running



def _measure_accuracy(detector: Any, sets: Mapping[str, Sequence[Any]], class_names: Sequence[str],
                      progress: Any, task: Any) -> tuple[dict[str, CocoResult], dict[str, list[Detections]]]:
    results, dets = {}, {}
    for set_name, examples in sets.items():
        if progress is not None:
            progress.update(task, description=f"{detector.name}: {set_name}")
        advance = (lambda: progress.advance(task)) if progress is not None else None
        dets[set_name] = run_detector(detector, examples, on_image=advance)
        results[set_name] = coco_evaluate(examples, dets[set_name], class_names,
                                          where=f"{set_name} split", validate=False)
    return results, dets


def _progress(enabled: bool):
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=False)


def evaluate_examples(variants: Sequence[VariantSpec], examples: Sequence[Any], class_names: Sequence[str],
                      *, float_detector: Any = None, split: str = "val",
                      dataset_fingerprint: str | None = None, latency_runs: int = 50,
                      latency_warmup: int = 5, threads: int | None = None,
                      slices: Sequence[str] = SLICES, seed: int = 0, ece_min_score: float = 0.1,
                      show_progress: bool = True) -> EvalReport:
    """Evaluate ``variants`` (and the optional float detector) on in-memory examples.

    The examples are validated first (non-empty, labels inside the label map). Raises ValueError
    otherwise.
    """
    names = class_names_by_id(list(class_names))
    validate_examples(examples, names, where=f"{split} split")
    unknown = [s for s in slices if s not in SLICES]
    if unknown:
        raise ValueError(f"unknown robustness slice(s) {unknown}; known: {list(SLICES)}")
    sets: dict[str, Sequence[Any]] = {split: examples, **make_slices(examples, slices, seed=seed)}
    n_threads = int(threads or all_threads())
    k = len(names)

    results: dict[str, ModelEval] = {}
    float_eval: ModelEval | None = None
    float_dets: list[Detections] | None = None
    variant_dets: dict[str, list[Detections]] = {}
    total = len(examples) * len(sets)
    from edgeship.base import progress as step_progress

    count = len(variants) + (1 if float_detector is not None else 0)
    accuracy = f"mAP on {split}" + (f" + {len(sets) - 1} robustness slices" if len(sets) > 1 else "")
    with _progress(show_progress) as progress:
        if float_detector is not None:
            step_progress.emit(item=FLOAT_KERAS, index=1, count=count, phase=accuracy)
            task = progress.add_task(f"{float_detector.name}", total=total) if progress else None
            cocos, dets = _measure_accuracy(float_detector, sets, class_names, progress, task)
            float_dets = dets[split]
            cal = calib.expected_calibration_error(examples, float_dets, min_score=ece_min_score)
            weights = Path(getattr(float_detector, "model_dir", "") or "") / "weights.h5"
            float_eval = ModelEval(name=FLOAT_KERAS, coco=cocos[split],
                                   size_bytes=weights.stat().st_size if weights.is_file() else None,
                                   file=str(weights) if weights.is_file() else None, source="float",
                                   scheme="keras float32", input_dtype="float32",
                                   robustness={s: cocos[s] for s in sets if s != split},
                                   calibration=cal, shift=calib.ScoreShift(0.0, 0.0, cal.detections, 1.0))
            step_progress.emit(item=FLOAT_KERAS, index=1, count=count, map=float_eval.map, mark=True)
        for index, spec in enumerate(variants, count - len(variants) + 1):
            from edgeship.detection.runners import TFLiteDetector

            step_progress.emit(item=spec.name, index=index, count=count, phase=accuracy)

            detector = TFLiteDetector(spec.path, num_threads=n_threads, input_spec=spec.input,
                                      output_map=spec.outputs, name=spec.name, num_classes=k)
            task = progress.add_task(spec.name, total=total + 2) if progress else None
            cocos, dets = _measure_accuracy(detector, sets, class_names, progress, task)
            if progress is not None:
                progress.update(task, description=f"{spec.name}: latency (1 thread)")
            sample = detector.prepare(examples[0].image)
            step_progress.emit(item=spec.name, index=index, count=count, phase="latency",
                               map=cocos[split].map)
            lat1 = tflite_latency(spec.path, sample, threads=1, runs=latency_runs, warmup=latency_warmup)
            if progress is not None:
                progress.advance(task)
                progress.update(task, description=f"{spec.name}: latency ({n_threads} threads)")
            latn = tflite_latency(spec.path, sample, threads=n_threads, runs=latency_runs, warmup=latency_warmup)
            if progress is not None:
                progress.advance(task)
                progress.update(task, description=f"{spec.name}: done")
            results[spec.name] = ModelEval(
                name=spec.name, coco=cocos[split], size_bytes=spec.size_bytes, file=spec.path.name,
                scheme=spec.scheme, source=spec.source, input_dtype=str(detector.input_dtype),
                latency_1=lat1, latency_n=latn, robustness={s: cocos[s] for s in sets if s != split},
                calibration=calib.expected_calibration_error(examples, dets[split], min_score=ece_min_score))
            variant_dets[spec.name] = dets[split]  # kept for the score shift below
            step_progress.emit(item=spec.name, index=index, count=count, map=cocos[split].map,
                               phase=f"1-thread {lat1.median:.2f} ms", mark=True)
            log.info("%s: mAP %.4f, mAP@.5 %.4f, %d B, 1-thread %.2f ms, %d-thread %.2f ms", spec.name,
                     cocos[split].map, cocos[split].map50, spec.size_bytes, lat1.median, n_threads, latn.median)

    # float reference: the Keras model, else the fp32 .tflite
    reference_name, reference_map, reference_dets = None, None, None
    if float_eval is not None:
        reference_name, reference_map, reference_dets = FLOAT_KERAS, float_eval.map, float_dets
        float_eval.delta_map_vs_float = 0.0
    elif "fp32" in results:
        reference_name, reference_map, reference_dets = "fp32", results["fp32"].map, variant_dets["fp32"]
    fp32 = results.get("fp32")
    for name, row in results.items():
        if reference_map is not None:
            row.delta_map_vs_float = round((reference_map - row.map) * 100.0, 4)
        if reference_dets is not None:
            row.shift = calib.score_shift(variant_dets[name], reference_dets, min_score=ece_min_score)
        if fp32 is not None:
            row.size_ratio_vs_fp32 = row.size_bytes / fp32.size_bytes if fp32.size_bytes else None
            if row.latency_1 and fp32.latency_1 and fp32.latency_1.median > 0:
                row.latency_ratio_vs_fp32 = row.latency_1.median / fp32.latency_1.median
    return EvalReport(dataset_fingerprint=dataset_fingerprint, split=split, images=len(examples),
                      objects=int(sum(len(np.asarray(ex.labels).reshape(-1)) for ex in examples)),
                      classes=[names[i] for i in sorted(names)], variants=results, float_keras=float_eval,
                      float_reference=reference_name, latency_runs=int(latency_runs), threads_n=n_threads)


def write_report(report: EvalReport, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write report.json, report.md, report.html and tradeoff.png into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = report.to_dict()
    path = evaluation.save(doc, out)
    files = {evaluation.FILE_NAME: path, **write_reports(doc, out)}
    report.out_dir, report.files = out, files
    return files


def evaluate(variants_dir: str | os.PathLike, dataset_uri: str, out_dir: str | os.PathLike, *,
             float_model_dir: str | os.PathLike | None = None, split: str = EVALUATE.split,
             latency_runs: int = EVALUATE.latency_runs, latency_warmup: int = EVALUATE.latency_warmup, threads: int | None = None,
             slices: Sequence[str] = SLICES, seed: int = 0, max_images: int | None = None,
             variants: Sequence[str] | None = None, show_progress: bool = True) -> EvalReport:
    """Evaluate every variant in ``variants_dir`` (and the float Keras model) on ``split`` of the
    dataset at ``dataset_uri``; write report.json/.md/.html and tradeoff.png into ``out_dir``.

    Args:
        variants_dir: the quantize step's artifact (variants.json, *.tflite, labels.txt).
        dataset_uri: the dataset artifact (local dir or gs:// prefix).
        out_dir: where the reports go (created).
        float_model_dir: the train step's Model artifact; None = no Keras row (the fp32 .tflite is
            then the float reference).
        latency_runs / latency_warmup: timed and untimed invocations per thread setting.
        threads: the "all threads" count (default os.cpu_count()).
        slices: robustness slices to score. max_images: evaluate only the first N images.
        variants: evaluate only these variant names.
    Raises FileNotFoundError / ValueError for missing or inconsistent inputs (empty split, labels
    outside the label map, label maps that disagree, corrupt models), naming the culprit.
    """
    specs, variant_labels = load_variants(variants_dir, only=variants)
    search = autoquant_search(variants_dir)  # checked before the long part
    examples, class_names, fingerprint = load_examples(dataset_uri, split, max_images=max_images)
    check_label_maps(class_names, variant_labels, f"{Path(variants_dir) / 'labels.txt'}")
    float_detector = None
    if float_model_dir is not None:
        from edgeship.detection.runners import KerasDetector

        float_detector = KerasDetector(float_model_dir)
        labels = float_detector.config.get("labels")
        check_label_maps(class_names, labels, f"the float model ({Path(float_model_dir) / 'model_config.json'})")
    log.info("evaluating %d variant(s)%s on %d %s images of %s", len(specs),
             " + the float Keras model" if float_detector else "", len(examples), split, dataset_uri)
    report = evaluate_examples(specs, examples, class_names, float_detector=float_detector, split=split,
                               dataset_fingerprint=fingerprint, latency_runs=latency_runs,
                               latency_warmup=latency_warmup, threads=threads, slices=slices, seed=seed,
                               show_progress=show_progress)
    report.autoquant = search
    write_report(report, out_dir)
    if report.autoquant is not None:
        import shutil

        for name in ("tradeoff.png", "tradeoff.md", "layers.md"):
            if (Path(variants_dir) / name).is_file():  # the search's curve and layer report
                target = Path(out_dir) / f"autoquant_{name}"
                shutil.copyfile(Path(variants_dir) / name, target)
                report.files[target.name] = target
    return report


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


def key_metrics(report: EvalReport | Mapping[str, Any]) -> dict[str, float]:
    """Flat {name: number} of the figures worth logging as KFP Metrics, per model."""
    doc = report.to_dict() if isinstance(report, EvalReport) else report
    out: dict[str, float] = {}
    rows = dict(doc.get("variants") or {})
    if doc.get("float_keras"):
        rows[FLOAT_KERAS] = doc["float_keras"]
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
    return out
