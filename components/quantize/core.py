"""The quantize step: every TFLite scheme (with detection post-processing inside) and Core ML.

For each variant: validate (the source model loads and has the contract's outputs; calibration
data exists for the schemes that need it) → convert (one converter factory, ``make_converter``,
the seam tests can replace) → validate (the .tflite loads in LiteRT with XNNPACK, its four
outputs are where the graph says, and its raw head outputs agree with the source Keras model on
a few images within the scheme's tolerance). Every error names the stage and the variant.

Output (docs/contracts.md "Variants artifact"): ``<variant>.tflite``, ``<variant>.ops.json`` and
``<variant>.ops.txt`` (op report), ``variants.json``, ``labels.txt``, and
``coreml_fp16.mlpackage.zip`` / ``coreml_int8w.mlpackage.zip``.

Parity metric (``PARITY_TOLERANCES``): the post-processing op's inputs are read from the
converted model itself (LiteRT with ``experimental_preserve_all_tensors``): class scores (sigmoid,
[A, K+1]) and box encodings ([A, 4]) are compared with the source Keras model's on the same
pixels. ``score_max_abs`` = max |Δscore|; ``score_mean_abs`` = mean |Δscore|; ``box_nmae`` =
mean |Δencoding| / max(std(Keras encodings), 0.25) (scale-free). A variant passes when each is ≤ its
tolerance. qat_int8 is compared with the QAT Keras model (which simulates int8 itself).

A parity miss (``strict_parity``, the default) sets that variant aside — recorded in
variants.json "skipped" with the figures, its file removed, never evaluated or published — and
the step goes on with the others: rounding on real photos can push one scheme past its tolerance
(raccoon, seed 2: full_int8_pt's score_max_abs 0.258 > 0.25) while its siblings are fine. A miss
of the reference ``fp32`` still fails the step: then the conversion itself is wrong.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from components.quantize.settings import QUANTIZE
from edgeship.contracts import variants as variants_contract
from edgeship.detection.convert import (
    CALIBRATION_SPLIT,
    DEFAULT_SCHEMES,
    INT8_SCHEMES,
    OPTIONAL_SCHEMES,
    PARITY_IMAGES,
    PARITY_TOLERANCES,
    SCHEMES,
    ConverterFactory,
    ExportedModule,
    LoadedModel,
    QuantizeError,
    convert_variant,
    export_module,
    load_model_artifact,
    make_converter,
    representative_dataset,
    select_calibration,
)
from edgeship.detection.postprocess import PostprocessConfig
from edgeship.detection.verify import check_outputs, inspect_tflite, parity, run_detection

log = logging.getLogger(__name__)
REFERENCE = "fp32"  # its parity miss means a broken conversion, not one scheme's rounding


class ParityMiss(QuantizeError):
    """A converted variant whose outputs are outside its scheme's tolerance."""


@dataclass
class VariantsResult:
    """What ``quantize`` wrote: the output dir, variants.json's content and the file sizes."""

    out_dir: Path
    variants: list[dict[str, Any]]
    coreml: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def index_path(self) -> Path:
        return self.out_dir / "variants.json"

    def sizes(self) -> dict[str, int]:
        out = {v["name"]: int(v["size_bytes"]) for v in self.variants}
        out.update({c["name"]: int(c["size_bytes"]) for c in self.coreml})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"variants": self.variants, "coreml": self.coreml, "skipped": self.skipped}


# ---------------------------------------------------------------- loading and validate-before


# ---------------------------------------------------------------- convert


# ---------------------------------------------------------------- validate-after


# ---------------------------------------------------------------- the step

def quantize(float_model_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
             qat_model_dir: str | os.PathLike | None = None, calibration: Any = None,
             num_calibration: int = QUANTIZE.num_calibration, schemes: Sequence[str] | None = None,
             coreml: bool = QUANTIZE.coreml,
             postprocess: PostprocessConfig | None = None, parity_images: int = PARITY_IMAGES,
             strict_parity: bool = True, converter_factory: ConverterFactory = make_converter,
             progress: bool = True) -> VariantsResult:
    """Convert the float (and QAT) model to every scheme, with op reports, parity and Core ML.

    Writes into ``out_dir`` (created): ``<variant>.tflite``, ``<variant>.ops.json/.txt``,
    ``variants.json``, ``labels.txt`` and Core ML ``*.mlpackage.zip``. ``calibration`` is the
    dataset URI (``num_calibration`` images drawn from its ``calibration`` split, topped up from
    train when the split is smaller; recorded per variant and as ``calibration_set``) or a list of
    examples; ``schemes`` defaults to all
    (qat_int8 only when ``qat_model_dir`` is given). Raises QuantizeError (a ValueError) naming
    the stage and variant; with ``strict_parity`` a parity miss sets the variant aside
    (``skipped``; the reference fp32's fails the step), else it is recorded and the variant kept.
    """
    schemes = _resolve_schemes(schemes, qat_model_dir)

    # ---- validate before
    loaded, qat_loaded = _load_sources(float_model_dir, qat_model_dir, schemes)
    chosen = select_calibration(calibration, loaded.input_size, num_calibration,
                                resize=loaded.config.get("resize", "stretch"))
    images, where = chosen.images, chosen.where
    calibration_record = {k: v for k, v in chosen.record.items() if k != "image_ids"}
    _check_calibration(schemes, images, calibration, where)
    rep = representative_dataset(images) if images else None
    check_images = images[:parity_images] if images else _noise_images(loaded.input_size, parity_images)
    cfg = postprocess or PostprocessConfig(box_scales=tuple(loaded.config.get("box_scales", (10, 10, 5, 5))))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries, errors, skipped, coreml_entries = _convert_all(
        schemes, loaded, qat_loaded, out, rep=rep, cfg=cfg, check_images=check_images,
        images=images, where=where, calibration_record=calibration_record,
        strict_parity=strict_parity, converter_factory=converter_factory, coreml=coreml,
        progress=progress)

    result = VariantsResult(out, entries, coreml_entries, errors, skipped)
    _write_index(result, loaded, float_model_dir=float_model_dir, qat_model_dir=qat_model_dir,
                 calibration_set=chosen.record)
    return result


def _resolve_schemes(schemes: Sequence[str] | None,
                     qat_model_dir: str | os.PathLike | None) -> list[str]:
    """The schemes to build: checked names, qat_int8 dropped when no QAT model is given."""
    explicit = schemes is not None
    schemes = list(schemes or DEFAULT_SCHEMES)
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        raise ValueError(f"unknown scheme(s) {unknown}; known: {sorted(SCHEMES)}")
    if qat_model_dir is None and "qat_int8" in schemes:
        if explicit:
            raise QuantizeError("validate-before", "qat_int8", "needs a QAT model (--qat-model / qat_model_dir)")
        schemes.remove("qat_int8")
        log.info("no QAT model given: skipping qat_int8")
    return schemes


def _load_sources(float_model_dir: str | os.PathLike, qat_model_dir: str | os.PathLike | None,
                  schemes: list[str]) -> tuple[LoadedModel, LoadedModel | None]:
    """Load the float model and (for qat_int8) the QAT model, checking that they match."""
    try:
        loaded = load_model_artifact(float_model_dir)
    except (ValueError, FileNotFoundError) as exc:
        raise QuantizeError("validate-before", "float model", str(exc)) from exc
    qat_loaded = None
    if "qat_int8" in schemes:
        try:
            qat_loaded = load_model_artifact(qat_model_dir, qat=True)  # type: ignore[arg-type]
        except (ValueError, FileNotFoundError) as exc:
            raise QuantizeError("validate-before", "qat_int8", str(exc)) from exc
        if qat_loaded.input_size != loaded.input_size or len(qat_loaded.anchors) != len(loaded.anchors):
            raise QuantizeError("validate-before", "qat_int8", f"QAT model {qat_model_dir} (input "
                                f"{qat_loaded.input_size}, {len(qat_loaded.anchors)} anchors) does not "
                                f"match the float model (input {loaded.input_size}, {len(loaded.anchors)})")
    return loaded, qat_loaded


def _check_calibration(schemes: list[str], images: list[np.ndarray], calibration: Any,
                       where: str) -> None:
    """Raise QuantizeError for a scheme that needs calibration data when there is none."""
    for s in schemes:
        if SCHEMES[s][2] and not images:
            raise QuantizeError("validate-before", s, f"{s} needs calibration data: "
                                f"split {CALIBRATION_SPLIT!r} in {calibration} is empty/missing ({where})")


def _convert_all(schemes: list[str], loaded: LoadedModel, qat_loaded: LoadedModel | None,
                 out: Path, *, rep: Callable | None, cfg: PostprocessConfig,
                 check_images: list[np.ndarray], images: list[np.ndarray], where: str,
                 calibration_record: dict[str, Any], strict_parity: bool,
                 converter_factory: ConverterFactory, coreml: bool, progress: bool,
                 ) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """Convert every scheme (optional ones may be skipped) and Core ML, with a progress bar."""
    from rich.progress import Progress

    from edgeship.base import progress as step_progress

    entries, errors, skipped = [], [], []
    with Progress(disable=not progress, transient=True) as bar, tempfile.TemporaryDirectory() as tmp:
        exports = _Exports(schemes, Path(tmp), cfg)
        task = bar.add_task("quantize", total=len(schemes) + (2 if coreml else 0))
        count = len(schemes) + (1 if coreml else 0)
        for index, s in enumerate(schemes, 1):
            bar.update(task, description=f"convert {s}")
            step_progress.emit(item=s, index=index, count=count, phase="converting and checking")
            try:
                source = qat_loaded if SCHEMES[s][0] == "qat" else loaded
                entry = _one_variant(s, source, out, rep, cfg, check_images, images, where, strict_parity,
                                     converter_factory, errors, exported=exports.get(s, source))
                if entry.get("calibration") is not None:
                    entry["calibration"] = calibration_record  # how many images, which splits
            except QuantizeError as exc:
                set_aside = isinstance(exc, ParityMiss) and s != REFERENCE
                if s not in OPTIONAL_SCHEMES and not set_aside:
                    raise
                why = "outputs outside its tolerance" if set_aside else "an experimental scheme"
                log.warning("%s set aside, not evaluated (%s): %s", s, why, exc)
                skipped.append({"name": s, "stage": exc.stage, "error": str(exc)})
                (out / f"{s}.tflite").unlink(missing_ok=True)
                bar.advance(task)
                continue
            entries.append(entry)
            bar.advance(task)
        coreml_entries = []
        if coreml:
            from components.quantize.coreml import convert_coreml

            bar.update(task, description="Core ML")
            step_progress.emit(item="Core ML", index=count, count=count, phase="converting")
            coreml_entries = convert_coreml(loaded, out)
            bar.advance(task, 2)
    return entries, errors, skipped, coreml_entries


def _write_index(result: VariantsResult, loaded: LoadedModel, *,
                 float_model_dir: str | os.PathLike, qat_model_dir: str | os.PathLike | None,
                 calibration_set: dict[str, Any]) -> None:
    """Write labels.txt and variants.json (the variants, the model and the calibration set)."""
    out = result.out_dir
    labels = loaded.labels or [f"class_{i + 1}" for i in range(loaded.num_classes)]
    (out / "labels.txt").write_text("\n".join(labels) + "\n")
    variants_contract.save_index({**result.to_dict(), "model": {
        "input_size": list(loaded.input_size), "num_classes": loaded.num_classes,
        "anchors": len(loaded.anchors), "float_model_dir": str(float_model_dir),
        "qat_model_dir": str(qat_model_dir) if qat_model_dir else None},
        "parity_tolerances": PARITY_TOLERANCES, "calibration_set": calibration_set}, out)


class _Exports:
    """Each source model (float, QAT) saved once for the schemes converted from it, when it is
    the source of more than one (``export_module``); None when that failed (each scheme then
    converts as before and reports its own error)."""

    def __init__(self, schemes: Sequence[str], root: Path, cfg: PostprocessConfig) -> None:
        self.shared = {src for src in (SCHEMES[s][0] for s in schemes)
                       if sum(SCHEMES[x][0] == src for x in schemes) > 1}
        self.root, self.cfg, self.done = root, cfg, {}

    def get(self, scheme: str, source: LoadedModel | None) -> ExportedModule | None:
        src = SCHEMES[scheme][0]
        if source is None or src not in self.shared:
            return None
        if src not in self.done:
            try:
                self.done[src] = export_module(source, self.cfg, self.root / src)
            except Exception as exc:  # noqa: BLE001 - the per-scheme conversion reports it properly
                log.warning("could not save the %s model once for all its schemes (%s: %s); "
                            "converting each from the model", src, type(exc).__name__, str(exc)[:300])
                self.done[src] = None
        return self.done[src]


def _one_variant(s: str, source: LoadedModel | None, out: Path, rep: Callable | None,
                 cfg: PostprocessConfig, check_images: list[np.ndarray], images: list[np.ndarray],
                 where: str, strict_parity: bool, converter_factory: ConverterFactory,
                 errors: list[str], *, exported: ExportedModule | None = None) -> dict[str, Any]:
    """Convert, validate and report one variant; returns its variants.json entry."""
    from edgeship.detection.op_report import write_op_report

    if source is None:
        raise QuantizeError("validate-before", s, "no source model")
    blob = convert_variant(source, s, representative=rep, postprocess=cfg,
                           converter_factory=converter_factory, exported=exported)
    path = out / f"{s}.tflite"
    path.write_bytes(blob)
    spec = inspect_tflite(path, s)
    want = SCHEMES[s][1]
    if spec["input"]["dtype"] != want:
        raise QuantizeError("validate-after", s, f"input dtype {spec['input']['dtype']}, expected {want}")
    if want == "uint8" and not (abs((spec["input"]["scale"] or 0) - 1.0) < 1e-6 and spec["input"]["zero_point"] == 0):
        log.warning("%s: uint8 input has scale %s, zero point %s (not raw pixels: were the input "
                    "ranges calibrated?); clients must quantize pixels with them", s,
                    spec["input"]["scale"], spec["input"]["zero_point"])
    results = run_detection(path, check_images, spec, variant=s)
    check_outputs(results, s, source.num_classes, cfg.max_detections)
    par = parity(source, results, check_images, s)
    par["images_from"] = where if images else "seeded noise images (no calibration data given)"
    if not par["passed"]:
        msg = f"parity outside tolerance: {par['failed']}"
        if strict_parity:
            raise ParityMiss("validate-after", s, msg)
        log.warning("%s: %s", s, msg)
        errors.append(f"{s}: {msg}")
    report = write_op_report(path, out, s)
    if s in INT8_SCHEMES and not report["int8_compute"]:
        log.warning("%s: float ops outside post-processing: %s", s,
                    report["float_ops_outside_postprocess"])
    log.info("%s: %d bytes, parity %s", s, path.stat().st_size,
             {k: par[k] for k in ("score_max_abs", "box_nmae")})
    return {
        "name": s, "source": SCHEMES[s][0], "scheme": s, "file": path.name,
        "size_bytes": path.stat().st_size, "input": {**{k: v for k, v in spec["input"].items() if k != "index"},
                  "resize": (source.config if source else {}).get("resize", "stretch")},
        "outputs": {k: {"index": v["index"], "name": v["name"], "position": v["position"]}
                    for k, v in spec["outputs"].items()},
        "op_report": f"{s}.ops.json",
        "op_summary": {"ops_total": report["ops_total"], "int8_compute": report["int8_compute"],
                       "integer_compute": report["integer_compute"],
                       "float_ops_outside_postprocess": len(report["float_ops_outside_postprocess"])},
        "parity": par, "postprocess": cfg.to_dict(),
        "calibration": {"images": len(images), "from": where} if SCHEMES[s][2] or (s == "qat_int8" and images) else None,
    }


def _noise_images(size: Sequence[int], n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1234)
    return [rng.integers(0, 256, size=(int(size[0]), int(size[1]), 3), dtype=np.uint8) for _ in range(max(1, n))]


def size_metrics(result: VariantsResult) -> dict[str, float]:
    """Flat metrics for KFP: ``<variant>_bytes`` and ``<variant>_size_vs_fp32``."""
    sizes = result.sizes()
    out: dict[str, float] = {f"{k}_bytes": float(v) for k, v in sizes.items()}
    if sizes.get("fp32"):
        out.update({f"{k}_size_vs_fp32": round(v / sizes["fp32"], 4) for k, v in sizes.items()})
    return out
