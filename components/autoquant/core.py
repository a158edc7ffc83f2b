"""The autoquant step: the fastest .tflite whose mAP loss vs float fits a budget.

``autoquant()`` wires the generic search (:mod:`components.autoquant.search`) to the real parts:
candidates are converted with the quantize step's converter factory (post-processing op inside),
selective int8 comes from :class:`edgeship.detection.layer_debug.LayerDebugger`, and every
candidate is measured for real: COCO mAP of the .tflite on the val split (LiteRT, the evaluate
step's ``TFLiteDetector`` and ``coco_evaluate``) and its 1-thread median latency.

Output directory:
``<chosen>.tflite`` + ``variants.json`` (one contract-shaped entry plus an ``autoquant`` block),
``labels.txt``, ``autoquant.json`` (the whole search), ``tradeoff.json/.md/.png`` (the curve),
``layers.csv/.json/.md`` (per-layer debug report), ``candidates/*.tflite`` (every candidate).

fp32 is the reference (ΔmAP 0) and therefore always meets the accuracy budget; "no candidate
meets the budget" happens when a latency or size limit is also set.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from components.autoquant import detector
from components.autoquant.search import (
    CandidateResult,
    CandidateSpec,
    LayerStat,
    Measurement,
    NoQuantizableLayersError,
    SearchResult,
    search,
    validate_budget,
)
from components.autoquant.settings import AUTOQUANT
from edgeship.contracts import variants as variants_contract
from edgeship.detection.layer_debug import LayerDebugger, write_layer_report

log = logging.getLogger(__name__)

ConverterMaker = Callable[[str], Any]  # scheme (fp32|float16|full_int8|int16x8|qat_int8) → fresh converter


class ConverterBuilder:
    """``build(spec)`` and ``rank_layers()`` for the search, from converter factories.

    Args:
        make_converter: scheme → a fresh, configured ``TFLiteConverter`` of the float model
            (for "fp32" it must be un-optimized: the debugger derives its own from it).
        representative_dataset: calibration data (callable yielding input lists).
        make_qat_converter: scheme "qat_int8" → converter of the QAT model (None: no QAT).
        rank_by: the debugger's ranking key.
    """

    def __init__(self, make_converter: ConverterMaker, representative_dataset: Callable[[], Any], *,
                 make_qat_converter: ConverterMaker | None = None, rank_by: str = "channel_nsr") -> None:
        self.make_converter = make_converter
        self.make_qat_converter = make_qat_converter
        self.debugger = LayerDebugger(lambda: make_converter("fp32"), representative_dataset, rank_by=rank_by)
        self._cache: dict[CandidateSpec, bytes] = {}

    @property
    def has_qat(self) -> bool:
        return self.make_qat_converter is not None

    def build(self, spec: CandidateSpec) -> bytes:
        """The .tflite bytes of ``spec`` (cached)."""
        if spec in self._cache:
            return self._cache[spec]
        if spec.scheme == "selective_int8":
            blob = self.debugger.quantize(spec.float_layers)
        elif spec.scheme == "qat_int8":
            if self.make_qat_converter is None:
                raise ValueError("qat_int8 needs a QAT model")
            blob = self.make_qat_converter("qat_int8").convert()
        else:
            blob = self.make_converter(spec.scheme).convert()
        blob = bytes(blob)
        if spec.scheme == "full_int8" and count_int8_ops(blob) == 0:
            raise NoQuantizableLayersError(
                "the model has no quantizable layers: its full-int8 conversion computes nothing in "
                "int8, so every int8 candidate would be the float model; use fp32/float16 directly")
        self._cache[spec] = blob
        return blob

    def rank_layers(self) -> list[LayerStat]:
        """The debugger's layers, worst first."""
        return self.debugger.layer_stats()


# ops that move or reshape data: an int8 output from them is not a quantized computation
_DATA_MOVEMENT_OPS = frozenset({"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE",
                                "CONCATENATION", "GATHER", "STRIDED_SLICE", "SLICE", "PACK", "UNPACK",
                                "SPLIT", "PAD", "IDENTITY"})


def count_int8_ops(tflite: bytes) -> int:
    """Computing ops (not QUANTIZE/DEQUANTIZE/reshapes/slices) with an int8/uint8/int16 output."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=tflite,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    dtypes = {int(t["index"]): np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    n = 0
    for op in interp._get_ops_details():  # noqa: SLF001 (the only op-level view LiteRT offers)
        if op["op_name"] in _DATA_MOVEMENT_OPS:
            continue
        outs = [dtypes.get(int(t)) for t in op["outputs"] if int(t) >= 0]
        if any(d in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16)) for d in outs):
            n += 1
    return n


def keras_converter_maker(model: Any, representative_dataset: Callable[[], Any] | None = None,
                          *, int8_io: bool = False) -> ConverterMaker:
    """Converter factory for a plain Keras model (tests, small models): scheme → converter."""
    from edgeship.base.tfcompat import tf

    def make(scheme: str) -> Any:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if scheme == "fp32":
            return conv
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if scheme == "float16":
            conv.target_spec.supported_types = [tf.float16]
        elif scheme in ("full_int8", "qat_int8"):
            conv.representative_dataset = representative_dataset
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:
                conv.inference_input_type = tf.int8
        elif scheme == "int16x8":
            conv.representative_dataset = representative_dataset
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        else:
            raise ValueError(f"unknown scheme {scheme!r}")
        return conv
    return make


# --------------------------------------------------------------------------- reports

def write_tradeoff(result: SearchResult, out_dir: str | Path) -> dict[str, Path]:
    """tradeoff.json (rows), tradeoff.md (table + verdict) and tradeoff.png (ΔmAP vs latency)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [c.to_dict() for c in result.candidates]
    chosen = result.chosen.name if result.chosen else None
    paths = {"tradeoff.json": out / "tradeoff.json", "tradeoff.md": out / "tradeoff.md",
             "tradeoff.png": out / "tradeoff.png"}
    paths["tradeoff.json"].write_text(json.dumps(
        {"budget_pt": result.budget_pt, "max_latency_ms": result.max_latency_ms,
         "max_size_bytes": result.max_size_bytes, "reference_metric": result.reference_metric,
         "chosen": chosen, "met_budget": result.met_budget, "partial": result.partial,
         "rows": rows}, indent=2, default=_json_default, allow_nan=False))
    lines = ["# Auto-quantize trade-off", "", result.message, "",
             f"Budget: ΔmAP ≤ {result.budget_pt:.2f} pt vs fp32 (mAP {result.reference_metric:.4f})"
             + (f", latency ≤ {result.max_latency_ms:.2f} ms" if result.max_latency_ms is not None else "")
             + (f", size ≤ {result.max_size_bytes} B" if result.max_size_bytes is not None else "")
             + f". Stop: {result.stop_reason}.", "",
             "| # | variant | layers kept float | size (B) | latency 1 thr (ms) | mAP | ΔmAP (pt) | fits |",
             "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(result.candidates):
        mark = " **← chosen**" if r.name == chosen else ""
        fits = "yes" if r.fits else (r.error or "; ".join(r.misses))
        lines.append(f"| {i} | {r.name}{mark} | {len(r.float_layers)} | {r.size_bytes or 'n/a'} | "
                     f"{_f(r.latency_ms, '.2f')} | {_f(r.metric, '.4f')} | {_f(r.delta_pt, '.2f')} | {fits} |")
    floats = [r for r in result.candidates if r.float_layers]
    if floats:
        last = floats[-1]
        lines += ["", f"Layers kept float by {last.name}: " + ", ".join(f"`{n}`" for n in last.float_layers)]
    paths["tradeoff.md"].write_text("\n".join(lines) + "\n")
    plot_tradeoff(result, paths["tradeoff.png"])
    return paths


def plot_tradeoff(result: SearchResult, path: str | Path) -> Path:
    """ΔmAP (pt) vs latency (ms) per candidate; the budget as a line; the chosen one starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    pts = [r for r in result.candidates if r.latency_ms is not None and r.delta_pt is not None]
    for r in pts:
        ax.scatter(r.latency_ms, r.delta_pt, c="tab:green" if r.fits else "tab:red", s=30, zorder=3)
        ax.annotate(r.name, (r.latency_ms, r.delta_pt), fontsize=7, xytext=(4, 3), textcoords="offset points")
    sel = [r for r in pts if r.scheme == "selective_int8"]
    full = [r for r in pts if r.scheme == "full_int8"]
    if sel:
        chain = full + sel
        ax.plot([r.latency_ms for r in chain], [r.delta_pt for r in chain], "--", c="grey", lw=0.8, zorder=2)
    ax.axhline(result.budget_pt, c="tab:blue", ls=":", label=f"budget {result.budget_pt:.2f} pt")
    if result.max_latency_ms is not None:
        ax.axvline(result.max_latency_ms, c="tab:orange", ls=":", label=f"max latency {result.max_latency_ms:.2f} ms")
    c = result.chosen
    if c is not None and c.latency_ms is not None and c.delta_pt is not None:
        ax.scatter(c.latency_ms, c.delta_pt, marker="*", s=260, facecolors="none", edgecolors="black",
                   zorder=4, label=f"chosen: {c.name}")
    lats = [r.latency_ms for r in pts if r.latency_ms > 0]
    log_x = bool(lats) and max(lats) / min(lats) > 20  # int16x8 runs on reference kernels: far right
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("latency, 1 thread (ms)" + (", log scale" if log_x else ""))
    ax.set_ylabel("ΔmAP vs fp32 (points, lower is better)")
    ax.set_title("auto-quantize candidates" + (" (partial search)" if result.partial else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def write_outputs(result: SearchResult, out_dir: str | Path, *, variant_entry: dict[str, Any] | None = None,
                  rank_by: str = "channel_nsr") -> dict[str, Path]:
    """Write the chosen .tflite, candidates/, autoquant.json, the curve and the layer report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    cand_dir = out / "candidates"
    cand_dir.mkdir(exist_ok=True)
    for r in result.candidates:
        if r.tflite is not None:
            (cand_dir / f"{r.name}.tflite").write_bytes(r.tflite)
    if result.chosen is not None and result.chosen.tflite is not None:
        files["model"] = out / f"{result.chosen.name}.tflite"
        files["model"].write_bytes(result.chosen.tflite)
    files.update(write_tradeoff(result, out))
    files.update(write_layer_report(result.layer_ranking, out, rank_by=rank_by))
    if variant_entry is not None:
        files["variants.json"] = variants_contract.save_index(
            json.loads(json.dumps({"variants": [variant_entry], "coreml": []}, default=_json_default)), out)
    result.files = {k: str(v) for k, v in files.items()}
    files["autoquant.json"] = out / "autoquant.json"
    result.files["autoquant.json"] = str(files["autoquant.json"])
    files["autoquant.json"].write_text(json.dumps(_clean(result.to_dict()), indent=2, default=_json_default))
    return files


def _f(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


def _clean(obj: Any) -> Any:
    """NaN/inf → None, so the JSON is strict."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --------------------------------------------------------------------------- the detector step


def autoquant(float_model_dir: str | os.PathLike, qat_model_dir: str | os.PathLike | None,
              dataset_uri: str, out_dir: str | os.PathLike, *, budget_pt: float,
              max_latency_ms: float | None = None, max_size_bytes: int | None = None,
              max_candidates: int | None = AUTOQUANT.max_candidates, max_seconds: float | None = None,
              seed: int = AUTOQUANT.seed, step: int = AUTOQUANT.step,
              max_float_layers: int | None = AUTOQUANT.max_float_layers,
              num_calibration: int = AUTOQUANT.calibration_images, max_val_images: int | None = None,
              latency_runs: int = AUTOQUANT.latency_runs,
              rank_by: str = "channel_nsr", progress: bool = True) -> SearchResult:
    """Search for the fastest detector .tflite within ``budget_pt`` mAP points of fp32; write it.

    Candidates (QAT int8, full int8, selective int8, 16x8, float16, fp32) are converted from the
    Model artifacts, measured on the dataset's val split (COCO mAP@[.5:.95] in LiteRT, 1-thread
    median latency over ``latency_runs``) and the first that fits is chosen. Calibration images are
    ``num_calibration`` drawn from the calibration split with ``seed``. Writes the files listed in
    the module docstring into ``out_dir``. Raises ValueError for a negative budget or bad limits,
    FileNotFoundError/ValueError for missing or bad model/dataset dirs, and
    NoQuantizableLayersError when int8 cannot quantize anything in the model.
    """
    _validate_step_args(budget_pt, max_latency_ms, max_size_bytes, max_seconds, latency_runs)
    inputs = detector.load_inputs(float_model_dir, qat_model_dir, dataset_uri, seed=seed,
                                  num_calibration=num_calibration, max_val_images=max_val_images)
    cfg, builder = _detector_builder(inputs, rank_by)
    work = Path(out_dir) / "candidates"
    work.mkdir(parents=True, exist_ok=True)
    specs: dict[str, dict[str, Any]] = {}
    measure = detector.make_measure(inputs, work, specs, latency_runs)
    result = _search_with_progress(builder, measure, progress=progress, budget_pt=budget_pt,
                                   max_latency_ms=max_latency_ms, max_size_bytes=max_size_bytes, step=step,
                                   max_float_layers=max_float_layers, max_candidates=max_candidates,
                                   max_seconds=max_seconds)
    entry = detector.variant_entry(result, specs, cfg, inputs, seed=seed, budget_pt=budget_pt)
    write_outputs(result, out_dir, variant_entry=entry, rank_by=rank_by)
    labels = list(inputs.class_names) or inputs.loaded.labels
    (Path(out_dir) / "labels.txt").write_text("\n".join(labels) + "\n")
    return result


def _validate_step_args(budget_pt: Any, max_latency_ms: Any, max_size_bytes: Any, max_seconds: Any,
                        latency_runs: Any) -> None:
    """Raise ValueError for a bad budget, time limit or latency run count before loading anything."""
    validate_budget(budget_pt, max_latency_ms, max_size_bytes)
    if max_seconds is not None and (not isinstance(max_seconds, (int, float)) or max_seconds <= 0):
        raise ValueError(f"autoquant max_seconds must be > 0, got {max_seconds!r}")
    if int(latency_runs) < 1:
        raise ValueError(f"autoquant latency_runs must be >= 1, got {latency_runs!r}")


def _detector_builder(inputs: detector.StepInputs, rank_by: str) -> tuple[Any, ConverterBuilder]:
    """The post-processing config and a ConverterBuilder over the detection module(s) with it inside."""
    from edgeship.detection import convert as qz
    from edgeship.detection.postprocess import PostprocessConfig, detection_module

    loaded, qat_loaded, rep = inputs.loaded, inputs.qat_loaded, inputs.rep
    cfg = PostprocessConfig(box_scales=tuple(loaded.config.get("box_scales", (10, 10, 5, 5))))
    module = detection_module(loaded.model, loaded.anchors, loaded.num_classes, loaded.input_size, cfg)
    qat_module = (detection_module(qat_loaded.model, qat_loaded.anchors, qat_loaded.num_classes,
                                   qat_loaded.input_size, cfg) if qat_loaded else None)
    builder = ConverterBuilder(lambda s: qz.make_converter(module, s, rep), rep,
                               make_qat_converter=(lambda s: qz.make_converter(qat_module, s, rep))
                               if qat_module is not None else None, rank_by=rank_by)
    return cfg, builder


def _search_with_progress(builder: ConverterBuilder, measure: Callable[[bytes, CandidateSpec], Measurement],
                          *, progress: bool, **search_args: Any) -> SearchResult:
    """Run the search (``search_args``: budget, limits, step) under a progress bar, per candidate."""
    from rich.progress import Progress

    from edgeship.base import progress as step_progress

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("autoquant: fp32 reference", total=None)

        def on_candidate(row: CandidateResult) -> None:
            bar.update(task, description=f"autoquant: {len(result_rows) + 1} measured, last {row.name}")
            result_rows.append(row)
            step_progress.emit(item=row.name, phase=f"candidate {len(result_rows)}: measured",
                               map=row.metric, mark=True)

        result_rows: list[CandidateResult] = []
        return search(builder.build, measure, rank_layers=builder.rank_layers, has_qat=builder.has_qat,
                      on_candidate=on_candidate, **search_args)
