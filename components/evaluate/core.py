"""The evaluate step: measure every converted variant (and the float Keras model) honestly.

For the float model and every .tflite in the variants artifact, run the model *itself* (LiteRT for
the .tflite files) on the held-out split and compute:

- COCO mAP@[.5:.95], mAP@.5 and per-class AP (pycocotools, `coco.py`);
- file size, and its ratio to the fp32 .tflite;
- latency with LiteRT/XNNPACK at 1 thread (every variant timed in turns) and at all threads (one
  at a time), with an interval of the median (`latency.py`, `intervals.py`);
- bootstrap intervals over images of mAP, mAP@.5 and ΔmAP (paired: the same drawn images for
  the float reference and the variant; `edgeship/detection/bootstrap.py`, `intervals.py`);
- mAP on robustness slices of the split: dark, bright, blurred, occluded (`robustness.py`);
- calibration: ECE, and the score shift of detections matched with the float model
  (`calibration.py`).

Writes report.json (docs/contracts.md "Evaluation artifact"), report.md, report.html and
tradeoff.png into the output directory. Plain Python; never imports kfp.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from components.evaluate import calibration as calib
from components.evaluate import champion as champ
from components.evaluate import diagnose as diagnosis
from components.evaluate import views as tta
from components.evaluate.intervals import (
    add_accuracy_intervals,
    add_champion_deltas,
    add_intervals,
    latency_method,
    measure_latency,
)
from components.evaluate.outputs import autoquant_search, calibration_records, key_metrics, set_aside  # noqa: F401 (re-export)
from components.evaluate.report import write_reports
from components.evaluate.robustness import SLICES, make_slices
from components.evaluate.running import VIEWS, Run, progress_bar
from components.evaluate.settings import EVALUATE
from edgeship.contracts import evaluation
from edgeship.contracts.variants import VariantSpec, load_variants
from edgeship.detection.coco import Detections, class_names_by_id, validate_examples
from edgeship.detection.latency import all_threads
from edgeship.detection.runners import check_label_maps, load_examples
from edgeship.detection.streamed import StreamedSplit, truth_of

log = logging.getLogger(__name__)

from components.evaluate.rows import FLOAT_KERAS, REPORT_FORMAT_VERSION, EvalReport, ModelEval  # noqa: F401 (re-export)


# --------------------------------------------------------------------------- running


def _float_row(run: Run, detector: Any) -> tuple[ModelEval, list[Detections]]:
    cocos, dets = run.accuracy(detector, 1)
    cal = calib.expected_calibration_error(run.examples, dets, min_score=run.ece_min_score)
    weights = Path(getattr(detector, "model_dir", "") or "") / "weights.h5"
    row = ModelEval(name=FLOAT_KERAS, coco=cocos[run.split],
                    size_bytes=weights.stat().st_size if weights.is_file() else None,
                    file=str(weights) if weights.is_file() else None, source="float",
                    scheme="keras float32", input_dtype="float32", robustness=run.robustness(cocos),
                    calibration=cal, shift=calib.ScoreShift(0.0, 0.0, cal.detections, 1.0),
                    views_coco=cocos.get(VIEWS))
    return row, dets


def _variant_row(run: Run, spec: VariantSpec, index: int) -> tuple[ModelEval, list[Detections], np.ndarray]:
    from edgeship.detection.runners import TFLiteDetector

    detector = TFLiteDetector(spec.path, num_threads=run.threads_n, input_spec=spec.input,
                              output_map=spec.outputs, name=spec.name, num_classes=len(run.class_names))
    cocos, dets = run.accuracy(detector, index)
    row = ModelEval(name=spec.name, coco=cocos[run.split], size_bytes=spec.size_bytes, file=spec.path.name,
                    scheme=spec.scheme, source=spec.source, input_dtype=str(detector.input_dtype),
                    robustness=run.robustness(cocos),
                    calibration=calib.expected_calibration_error(run.examples, dets, min_score=run.ece_min_score),
                    views_coco=cocos.get(VIEWS))
    return row, dets, detector.prepare(run.examples[0].image)


def _champion_row(run: Run, found: champ.ChampionFound | None, index: int,
                  samples: dict[str, tuple[Path, np.ndarray]]) -> ModelEval | None:
    """The champion scored like a variant on the same images (its sample joins the latency turns)."""
    if found is None or found.detector is None:
        return None
    detector = found.detector
    try:  # the split (and its views) only: the robustness slices are the variants' figures
        cocos, _ = replace(run, sets={run.split: run.examples}).accuracy(detector, index)
        samples[detector.name] = (detector.path, detector.prepare(run.examples[0].image))
    except Exception as exc:  # noqa: BLE001 - a champion that fails on these images must not fail the step
        log.warning("champion %s could not be scored: %s", found.record.get("version"), exc)
        found.record.update(rescored=False, reason=f"scoring it on this split failed: {type(exc).__name__}: "
                                                   f"{str(exc)[:300]}")
        found.detector = None
        return None
    return ModelEval(name=detector.name, coco=cocos[run.split], size_bytes=detector.path.stat().st_size,
                     file=found.record.get("file"), scheme=found.record.get("variant"), source="champion",
                     input_dtype=str(detector.input_dtype), views_coco=cocos.get(VIEWS))


def _champion_record(found: champ.ChampionFound | None, row: ModelEval | None, results: dict[str, ModelEval],
                     lat: tuple[dict, dict], interval_args: dict[str, Any]) -> dict[str, Any] | None:
    """report.json ``champion``: the record, and when re-scored its row (latency timed in the same
    turns) with every variant's paired ΔmAP against it."""
    if found is None:
        return None
    if row is None:
        return dict(found.record)
    row.latency_1, row.latency_n = lat[0].get(row.name), lat[1].get(row.name)
    scored_on = add_champion_deltas(results, row, resamples=interval_args["resamples"],
                                    confidence=interval_args["confidence"], seed=interval_args["seed"],
                                    groups=interval_args["groups"])
    add_accuracy_intervals({row.name: row}, None, resamples=interval_args["resamples"],
                           confidence=interval_args["confidence"], seed=interval_args["seed"])
    keep = ("size_bytes", "map", "map50", "per_class_ap", "per_class_ap50", "latency_ms", "file", "scheme",
            "input_dtype", "detections", evaluation.MAP_CI, evaluation.MAP50_CI)
    doc = row.to_dict()
    scored = row.views_coco if scored_on != "photos" else row.coco
    return {**found.record, "rescored": True, "delta_scored_on": scored_on, "delta_images": scored.images,
            "delta_champion_map": scored.map,
            **{k: doc[k] for k in keep}}


def _compare(results: dict[str, ModelEval], float_eval: ModelEval | None,
             dets: dict[str, list[Detections]], ece_min_score: float) -> str | None:
    """ΔmAP, score shift and ratios against the float reference (the Keras model, else the fp32
    .tflite) and fp32; returns the reference's name."""
    reference = FLOAT_KERAS if float_eval is not None else ("fp32" if "fp32" in results else None)
    reference_map = None
    if float_eval is not None:
        reference_map, float_eval.delta_map_vs_float = float_eval.map, 0.0
    elif reference is not None:
        reference_map = results["fp32"].map
    fp32 = results.get("fp32")
    for name, row in results.items():
        if reference is not None:
            row.delta_map_vs_float = round((reference_map - row.map) * 100.0, 4)
            row.shift = calib.score_shift(dets[name], dets[reference], min_score=ece_min_score)
        if fp32 is not None:
            row.size_ratio_vs_fp32 = row.size_bytes / fp32.size_bytes if fp32.size_bytes else None
            if row.latency_1 and fp32.latency_1 and fp32.latency_1.median > 0:
                row.latency_ratio_vs_fp32 = row.latency_1.median / fp32.latency_1.median
    return reference


def evaluate_examples(variants: Sequence[VariantSpec], examples: Sequence[Any], class_names: Sequence[str],
                      *, float_detector: Any = None, split: str = "val",
                      dataset_fingerprint: str | None = None, latency_runs: int = EVALUATE.latency_runs,
                      latency_warmup: int = EVALUATE.latency_warmup, threads: int | None = None,
                      slices: Sequence[str] = SLICES, seed: int = 0, ece_min_score: float = 0.1,
                      bootstrap_resamples: int = EVALUATE.bootstrap_resamples,
                      confidence: float = EVALUATE.confidence, latency_blocks: int = EVALUATE.latency_blocks,
                      show_progress: bool = True, diagnose: Diagnose | None = None,
                      views: int = EVALUATE.views, champion: champ.ChampionFound | None = None) -> EvalReport:
    """Evaluate ``variants`` (and the optional float detector) on in-memory examples.

    The examples are validated first (non-empty, labels inside the label map). Raises ValueError
    otherwise. ``bootstrap_resamples`` = 0 leaves the mAP intervals out. ``diagnose`` (rows with
    ΔmAP and its interval → more variants) runs after the accuracy pass; what it returns is
    measured like the rest (components/evaluate/diagnose.py). ``views`` per photo for the gate's
    ΔmAP (-1 = auto: more on small splits; components/evaluate/views.py). ``champion``
    (components/evaluate/champion.py): the channel's current model, scored on the same images.
    """
    from edgeship.base import progress as step_progress

    names = class_names_by_id(list(class_names))
    validate_examples(examples, names, where=f"{split} split")
    unknown = [s for s in slices if s not in SLICES]
    if unknown:
        raise ValueError(f"unknown robustness slice(s) {unknown}; known: {list(SLICES)}")
    results: dict[str, ModelEval] = {}
    dets: dict[str, list[Detections]] = {}
    samples: dict[str, tuple[Path, np.ndarray]] = {}
    float_eval: ModelEval | None = None
    first = 2 if float_detector is not None else 1  # the progress index of the first variant
    count = len(variants) + first - 1 + (1 if champion is not None and champion.detector is not None else 0)
    per_photo = 1 if isinstance(examples, StreamedSplit) else tta.views_for(len(examples), views)
    extra, groups = tta.extra_views(examples, per_photo)
    interval_args = dict(resamples=bootstrap_resamples, confidence=confidence, seed=seed, groups=groups,
                         views=tta.describe(len(examples), per_photo) if extra else None)
    with progress_bar(show_progress) as progress:
        run = Run(examples, {split: examples, **make_slices(examples, slices, seed=seed)}, list(class_names),
                  split, ece_min_score, progress, count, int(threads or all_threads()), views=extra)
        if float_detector is not None:
            float_eval, dets[FLOAT_KERAS] = _float_row(run, float_detector)
        for index, spec in enumerate(variants, first):
            results[spec.name], dets[spec.name], sample = _variant_row(run, spec, index)
            samples[spec.name] = (spec.path, sample)
        if diagnose is not None:
            _more_variants(run, diagnose, results, float_eval, dets, samples, interval_args)
            count = run.count
        champion_row = _champion_row(run, champion, count, samples)  # the champion comes last
    step_progress.emit(phase=f"latency of {len(samples)} variant(s), timed in turns")
    lat1, latn, host = measure_latency(samples, threads_n=run.threads_n, runs=latency_runs,
                                       warmup=latency_warmup, blocks=latency_blocks, confidence=confidence)
    for index, (name, row) in enumerate(results.items(), first):
        row.latency_1, row.latency_n = lat1[name], latn[name]
        step_progress.emit(item=name, index=index, count=count, map=row.map,
                           phase=f"1-thread {row.latency_1.median:.2f} ms", mark=True)
        log.info("%s: mAP %.4f, mAP@.5 %.4f, %d B, 1-thread %.2f ms, %d-thread %.2f ms", name, row.map,
                 row.map50, row.size_bytes, row.latency_1.median, run.threads_n, row.latency_n.median)
    reference = _compare(results, float_eval, dets, ece_min_score)
    models = {**results, **({FLOAT_KERAS: float_eval} if float_eval is not None else {})}
    intervals = add_intervals(models, reference, **interval_args)
    if intervals is not None:
        intervals["latency"] = latency_method(latency_blocks, latency_runs, confidence)
    champion_doc = _champion_record(champion, champion_row, results, (lat1, latn), interval_args)
    return EvalReport(dataset_fingerprint=dataset_fingerprint, split=split, images=len(examples),
                      objects=int(sum(len(np.asarray(ex.labels).reshape(-1)) for ex in truth_of(examples))),
                      classes=[names[i] for i in sorted(names)], variants=results, float_keras=float_eval,
                      float_reference=reference, latency_runs=int(latency_runs), threads_n=run.threads_n,
                      intervals=intervals, latency_host=host, champion=champion_doc)


Diagnose = Callable[[dict[str, ModelEval]], Sequence[VariantSpec]]


def _more_variants(run: Run, diagnose: Diagnose, results: dict[str, ModelEval], float_eval: ModelEval | None,
                   dets: dict[str, list[Detections]], samples: dict[str, tuple[Path, np.ndarray]],
                   interval_args: dict[str, Any]) -> None:
    """Give ``diagnose`` the rows with their ΔmAP and intervals so far; measure what it returns."""
    reference = _compare(results, float_eval, dets, run.ece_min_score)
    models = {**results, **({FLOAT_KERAS: float_eval} if float_eval is not None else {})}
    add_intervals(models, reference, **interval_args)
    extra = [spec for spec in diagnose(results) if spec.name not in results]
    start = len(results) + (2 if float_eval is not None else 1)  # after the variants, before a champion
    run.count += len(extra)
    for index, spec in enumerate(extra, start):
        results[spec.name], dets[spec.name], sample = _variant_row(run, spec, index)
        samples[spec.name] = (spec.path, sample)


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
             variants: Sequence[str] | None = None, bootstrap_resamples: int = EVALUATE.bootstrap_resamples,
             confidence: float = EVALUATE.confidence, latency_blocks: int = EVALUATE.latency_blocks,
             show_progress: bool = True, accuracy_budget: Any = None,
             diagnose: bool = EVALUATE.diagnose, views: int = EVALUATE.views, bucket: str = "",
             model_name: str = "", channel: str = "", champion_lookup: Any = None) -> EvalReport:
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
        bootstrap_resamples / confidence: the intervals of mAP, mAP@.5 and ΔmAP (0 = none) and of
            the latency median; seed: the robustness slices' and the resamples' seed.
        latency_blocks: rounds the timed runs are split into (variants timed in turns).
        accuracy_budget: the gate's budget (ΔmAP points; None / "none" = not set). With
            ``diagnose`` and a float model, when no int8 variant is provably within it the
            per-layer diagnosis runs and its selective-int8 variants are measured too
            (components/evaluate/diagnose.py; written under ``out_dir``/selective).
        views: views per val photo for the gate's ΔmAP (mirror, centre crop; 1 = the photos only;
            -1 = auto: up to 4 until 200 images are scored; components/evaluate/views.py).
        bucket / model_name / channel: where the model is published; when all three are given, the
            channel's champion (the model it serves now) is re-scored on the same images when it
            has the same labels, and every variant gets a paired ΔmAP against it
            (components/evaluate/champion.py; ``champion_lookup(model, channel)`` replaces the
            registry lookup).
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
    hook = diagnosis.hook_for(variants_dir, dataset_uri, out_dir, float_model_dir, accuracy_budget) if diagnose else None
    with tempfile.TemporaryDirectory(prefix="edgeship-champion-") as work:
        found = champ.find(bucket, model_name, channel, class_names, work, threads=threads, lookup=champion_lookup)
        report = evaluate_examples(specs, examples, class_names, float_detector=float_detector, split=split,
                                   dataset_fingerprint=fingerprint, latency_runs=latency_runs,
                                   latency_warmup=latency_warmup, threads=threads, slices=slices, seed=seed,
                                   bootstrap_resamples=bootstrap_resamples, confidence=confidence,
                                   latency_blocks=latency_blocks, show_progress=show_progress,
                                   diagnose=hook, views=views, champion=found)
    if hook is not None and hook.found is not None:
        diagnosis.costs(hook.found, report.variants)
        report.diagnosis = hook.found.to_dict()
    report.autoquant = search
    report.set_aside = set_aside(variants_dir)
    for name, record in calibration_records(variants_dir).items():
        if name in report.variants:
            report.variants[name].calibration_set = record
    write_report(report, out_dir)
    if report.autoquant is not None:
        import shutil

        for name in ("tradeoff.png", "tradeoff.md", "layers.md"):
            if (Path(variants_dir) / name).is_file():  # the search's curve and layer report
                target = Path(out_dir) / f"autoquant_{name}"
                shutil.copyfile(Path(variants_dir) / name, target)
                report.files[target.name] = target
    return report
