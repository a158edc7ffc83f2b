"""The detector parts of the autoquant step (:func:`components.autoquant.core.autoquant`).

Loading the Model artifacts, the calibration images and the val split; measuring a candidate
.tflite for real (COCO mAP in LiteRT and 1-thread median latency); and the variants.json entry
of the chosen candidate. The generic search itself lives in :mod:`components.autoquant.search`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from components.autoquant.search import CandidateSpec, Measurement, SearchResult
from edgeship.detection import verify


@dataclass
class StepInputs:
    """What the step loads before searching: the models, the calibration images and the val split."""

    loaded: Any                      # the float Model artifact (qz.load_model_artifact)
    qat_loaded: Any | None           # the QAT Model artifact, or None
    images: Any                      # calibration images
    where: Any                       # where the calibration images came from
    rep: Callable[[], Any]           # representative dataset over ``images``
    val: list[Any]                   # val examples to measure mAP on
    class_names: list[str]


def load_inputs(float_model_dir: str | os.PathLike, qat_model_dir: str | os.PathLike | None,
                dataset_uri: str, *, seed: int, num_calibration: int,
                max_val_images: int | None) -> StepInputs:
    """Load the models, ``num_calibration`` calibration images drawn with ``seed``, and the val split."""
    from edgeship.detection import convert as qz
    from edgeship.detection.runners import load_examples

    loaded = qz.load_model_artifact(float_model_dir)
    qat_loaded = qz.load_model_artifact(qat_model_dir, qat=True) if qat_model_dir else None
    from edgeship.detection.dataset import load_split

    calib_examples = list(load_split(dataset_uri, qz.CALIBRATION_SPLIT))
    if not calib_examples:
        raise ValueError(f"dataset {dataset_uri}: the {qz.CALIBRATION_SPLIT!r} split is empty; "
                         "int8 calibration needs images")
    order = np.random.default_rng(seed).permutation(len(calib_examples))[: int(num_calibration)]
    images, where = qz.load_calibration_images([calib_examples[i] for i in sorted(order)],
                                               loaded.input_size, int(num_calibration))
    rep = qz.representative_dataset(images)
    val, class_names, _fp = load_examples(dataset_uri, "val", max_images=max_val_images)
    if not val:
        raise ValueError(f"dataset {dataset_uri}: the val split is empty; nothing to measure mAP on")
    return StepInputs(loaded=loaded, qat_loaded=qat_loaded, images=images, where=where, rep=rep,
                      val=val, class_names=class_names)


def make_measure(inputs: StepInputs, work: Path, specs: dict[str, dict[str, Any]],
                 latency_runs: int) -> Callable[[bytes, CandidateSpec], Measurement]:
    """``measure(blob, spec)`` for the search: write the candidate to ``work``, record its I/O
    spec in ``specs``, and return its val mAP and 1-thread latency."""
    from edgeship.base import progress as step_progress
    from edgeship.detection.coco import coco_evaluate
    from edgeship.detection.latency import tflite_latency
    from edgeship.detection.runners import TFLiteDetector, run_detector

    val, class_names = inputs.val, inputs.class_names

    def measure(blob: bytes, spec: CandidateSpec) -> Measurement:
        step_progress.emit(item=spec.name, phase=f"candidate {len(specs) + 1}: measuring mAP and latency")
        path = work / f"{spec.name}.tflite"
        path.write_bytes(blob)
        info = verify.inspect_tflite(path, spec.name)
        specs[spec.name] = info
        det = TFLiteDetector(path, num_threads=1, input_spec=info["input"], output_map=info["outputs"],
                             name=spec.name, num_classes=inputs.loaded.num_classes)
        coco = coco_evaluate(val, run_detector(det, val), class_names, where="val split", validate=False)
        lat = tflite_latency(path, det.prepare(val[0].image), threads=1, runs=int(latency_runs), warmup=3)
        return Measurement(metric=float(coco.map), latency_ms=lat.median, size_bytes=len(blob),
                           extra={"map50": float(coco.map50), "latency_p90_ms": lat.p90})
    return measure


def variant_entry(result: SearchResult, specs: dict[str, dict[str, Any]], cfg: Any,
                  inputs: StepInputs, *, seed: int, budget_pt: float) -> dict[str, Any] | None:
    """The variants.json entry of the chosen candidate (None when nothing was chosen or measured)."""
    if result.chosen is None or result.chosen.name not in specs:
        return None
    c = result.chosen
    info = specs[c.name]
    return {"name": c.name, "source": "qat" if c.scheme == "qat_int8" else "float", "scheme": c.scheme,
            "file": f"{c.name}.tflite", "size_bytes": c.size_bytes,
            "input": {k: v for k, v in info["input"].items() if k != "index"},
            "outputs": {k: {"index": v["index"], "name": v["name"], "position": v["position"]}
                        for k, v in info["outputs"].items()},
            "postprocess": cfg.to_dict(),
            "calibration": {"images": len(inputs.images), "from": inputs.where, "seed": seed},
            "autoquant": {"float_layers": c.float_layers, "map": c.metric, "delta_map_pts": c.delta_pt,
                          "latency_ms_1thread": c.latency_ms, "budget_pt": budget_pt,
                          "met_budget": result.met_budget, "partial": result.partial}}
