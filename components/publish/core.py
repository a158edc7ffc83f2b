"""publish: upload the pipeline's chosen variant to an immutable version folder (the upload path
itself is upload.py; publishing any other model is any_model.py, the Firebase ML import
firebase_import.py).

Layout (docs/delivery.md): ``gs://BUCKET/models/{model}/{version}/`` holds ``model.tflite``, the
Core ML package zips (if the variants artifact has them), ``labels.txt``, ``report.json`` (the
evaluation report), ``decision.json`` (the gate's decision, if given) and ``manifest.json``,
uploaded **last**: its arrival is the commit point the Cloud Function reacts to. Every upload is
create-only (``if_generation_match=0``) and carries its sha256 in the object metadata. A version
folder that already holds anything is an error; a failed publish deletes what it uploaded (best
effort) and, having no manifest, is never registered either way.

Firestore (written by the function, read here): ``models/{model}/versions/{version}`` and
``models/{model}/releases/{channel}-{version}``; the operator's control document
``models/{model}/channels/{channel}`` (paused, pinned_version, who/when/why, history).
Nothing runs at import; cloud clients are made on first use.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from components.publish.settings import PUBLISH
from components.publish.upload import (  # noqa: F401 - re-exported: the upload path lives in upload.py
    CONTENT_TYPES,
    MANIFEST_FILE,
    PublishResult,
    manifest_files,
    sha256_file,
)
from components.publish.upload import Upload as _Upload
from components.publish.upload import hash_uploads as _hash_uploads
from components.publish.upload import upload_version as _upload_version
from edgeship.contracts import evaluation
from edgeship.contracts import manifest as mf
from edgeship.contracts import variants as variants_contract
from edgeship.delivery.registry import _utc_iso

log = logging.getLogger(__name__)

MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
REPORT_FILE = "report.json"
DECISION_FILE = "decision.json"


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} is not a JSON object")
    return data


def build_manifest(variants_dir: str | os.PathLike, variant: str, *, model: str, channel: str,
                   version: str, created_at: str, report_dir: str | os.PathLike | None = None,
                   dataset_dir: str | os.PathLike | None = None,
                   decision_path: str | os.PathLike | None = None, min_app_version: str = PUBLISH.min_app_version,
                   pipeline_run_id: str = "", parent_version: str | None = None,
                   include_coreml: bool = True, work_dir: str | os.PathLike | None = None,
                   version_name: str | None = None) -> tuple[dict, list[_Upload]]:
    """Validate the inputs and build the manifest plus the list of files to upload (no I/O remote).

    A detector (.tflite with the fused post-processing op) is published with TFLite Model Metadata
    (input normalization, output roles, the label file packed in) so MediaPipe Tasks and the TFLite
    Task Library load it; the tagged copy is written to ``work_dir`` (required then).

    Raises ValueError / FileNotFoundError naming the bad value and the file it came from.
    """
    _check_release_ids(model, channel, version, min_app_version, parent_version)
    if version_name is not None:
        mf.check_version_name(version_name, "--version-name")
    vdir = variants_dir_of(variant, Path(variants_dir), report_dir)
    vjson_path = vdir / variants_contract.FILE_NAME
    vjson = variants_contract.read_variants(vdir)
    entry = variants_contract.entry(vjson, variant, where=str(vjson_path))
    uploads = [_Upload(vdir / entry["file"], MODEL_FILE, "tflite", entry.get("scheme") or variant)]
    if include_coreml:  # Core ML's own conversions of the float model, whichever .tflite was chosen
        uploads += _coreml_uploads(Path(variants_dir))
    labels, labels_upload = _read_labels(vdir)
    _tag_with_metadata(uploads[0], entry, labels, model=model, version=version, variant=variant,
                       work_dir=work_dir)
    uploads.append(labels_upload)
    metrics, fingerprint = _report_metrics(report_dir, variant, uploads)
    if dataset_dir is not None and fingerprint is None:
        fingerprint = _dataset_fingerprint(Path(dataset_dir))
    if decision_path is not None:
        uploads.append(_decision_upload(Path(decision_path)))
    _hash_uploads(uploads, vjson_path)
    metrics["size_bytes"] = uploads[0].size

    manifest = {
        "schema_version": mf.SCHEMA_VERSION, "model": model, "version": version,
        "created_at": created_at, "channel": channel, "variant": variant,
        "files": manifest_files(uploads),
        **_io_spec(entry),
        "labels": labels, "metrics": metrics, "min_app_version": min_app_version,
        "pipeline_run_id": str(pipeline_run_id or ""),
        "dataset_fingerprint": fingerprint, "parent_version": parent_version,
        **({"version_name": version_name} if version_name else {}),
    }
    mf.validate(manifest, source=f"manifest built from {vjson_path} (variant {variant!r})")
    return manifest, uploads


SELECTIVE_DIR = "selective"  # the evaluation's variants artifact of selective-int8 candidates


def variants_dir_of(variant: str, variants_dir: Path, report_dir: str | os.PathLike | None) -> Path:
    """Where ``variant`` lives: the variants artifact, or the selective-int8 candidates that the
    evaluation's per-layer diagnosis added (``<evaluation>/selective``) when only they have it."""
    if report_dir is None:
        return variants_dir
    selective = Path(report_dir) / SELECTIVE_DIR
    if not (selective / variants_contract.FILE_NAME).is_file():
        return variants_dir
    names = {str(e.get("name")) for e in variants_contract.read_variants(variants_dir)["variants"]}
    if variant in names:
        return variants_dir
    extra = {str(e.get("name")) for e in variants_contract.read_variants(selective)["variants"]}
    return selective if variant in extra else variants_dir


def _check_release_ids(model: str, channel: str, version: str, min_app_version: str,
                       parent_version: str | None) -> None:
    """Raise ValueError for a bad model name, channel, version, app version or parent version."""
    mf.check_name(model, "model name")
    mf.check_channel(channel)
    mf.check_version(version)
    mf.app_version_tuple(min_app_version, "min_app_version")
    if parent_version is not None:
        mf.check_version(parent_version, "parent_version")


def _coreml_uploads(variants_dir: Path) -> list[_Upload]:
    """The Core ML packages listed in the variants artifact (the quantize step's), also when the
    chosen .tflite is a selective-int8 candidate from the evaluation."""
    vjson_path = variants_dir / variants_contract.FILE_NAME
    uploads = []
    for cm in variants_contract.read_variants(variants_dir).get("coreml", []) or []:
        path = variants_dir / str(cm.get("file", ""))
        if cm.get("file") and path.is_file():
            uploads.append(_Upload(path, path.name, "coreml", cm.get("name")))
        else:
            log.warning("Core ML package %s listed in %s is absent: not published", path, vjson_path)
    return uploads


def _tag_with_metadata(upload: _Upload, entry: dict, labels: list[str], *, model: str, version: str,
                       variant: str, work_dir: str | os.PathLike | None) -> None:
    """Point ``upload`` at a copy of the detector carrying TFLite Model Metadata; a .tflite
    without the detection post-processing op is published as it is (with a warning)."""
    from edgeship.detection import metadata

    data = upload.local.read_bytes()
    if not metadata.has_detection_postprocess(data):
        log.warning("%s has no TFLite_Detection_PostProcess op: published without TFLite Model "
                    "Metadata (MediaPipe Tasks will not load it as a detector)", upload.local)
        return
    if work_dir is None:
        raise ValueError("build_manifest needs a work_dir to write the detector with its metadata")
    try:
        tagged = metadata.add_metadata(
            data, labels=labels, input_spec=entry["input"], outputs=entry["outputs"], name=model,
            version=version, description=f"edgeship {variant} detector ({entry.get('scheme') or variant}); "
                                         f"labels: {', '.join(labels)}")
    except ValueError as exc:
        raise ValueError(f"variant {variant!r} ({upload.local}): cannot write TFLite Model Metadata: "
                         f"{exc}") from exc
    path = Path(work_dir) / MODEL_FILE
    path.write_bytes(tagged)
    upload.local = path


def _read_labels(vdir: Path) -> tuple[list[str], _Upload]:
    """The non-empty lines of the variants artifact's labels.txt, and its upload."""
    labels_path = vdir / LABELS_FILE
    if not labels_path.is_file():
        raise FileNotFoundError(f"labels file not found: {labels_path} (the variants artifact must have it)")
    labels = [line.strip() for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not labels:
        raise ValueError(f"labels file {labels_path} is empty")
    return labels, _Upload(labels_path, LABELS_FILE, "labels", None)


def _report_metrics(report_dir: str | os.PathLike | None, variant: str,
                    uploads: list[_Upload]) -> tuple[dict[str, Any], str | None]:
    """The manifest metrics and dataset fingerprint from the evaluation report (appends its upload)."""
    metrics: dict[str, Any] = {"map": None, "map50": None, "delta_map_vs_float": None,
                               "size_bytes": 0, "latency_ms": None}
    if report_dir is None:
        return metrics, None
    report = evaluation.load(report_dir)
    row = report.row(variant)
    metrics.update({k: (float(row[k]) if row.get(k) is not None else None)
                    for k in ("map", "map50", "delta_map_vs_float")})
    metrics["latency_ms"] = report.latency_ms(variant)
    uploads.append(_Upload(report.path, REPORT_FILE, "report", None))
    return metrics, report.dataset_fingerprint


def _dataset_fingerprint(dataset_dir: Path) -> str | None:
    """The fingerprint in the dataset artifact's dataset.json, or None when it has none."""
    ds = dataset_dir / "dataset.json"
    if ds.is_file():
        return _read_json(ds, "dataset.json").get("fingerprint")
    return None


def _decision_upload(dpath: Path) -> _Upload:
    """The gate's decision.json (``dpath`` or the file of that name in the folder ``dpath``)."""
    if dpath.is_dir():
        dpath = dpath / DECISION_FILE
    if not dpath.is_file():
        raise FileNotFoundError(f"gate decision not found: {dpath}")
    return _Upload(dpath, DECISION_FILE, "decision", None)


def _io_spec(entry: dict) -> dict[str, Any]:
    """The manifest's ``input`` and ``outputs`` blocks from the variant's entry in variants.json;
    ``input.resize`` is the model's resize policy (how an app must fit a photo to the input)."""
    inp = entry["input"]
    return {
        "input": {"name": str(inp.get("name", "")), "shape": list(inp.get("shape", [])),
                  "dtype": inp.get("dtype"), "scale": inp.get("scale"),
                  "zero_point": inp.get("zero_point"),
                  "normalization": str(inp.get("normalization", "")),
                  "resize": str(inp.get("resize") or "stretch")},  # variants.json before it had none: stretch
        "outputs": {k: {"index": int(v["index"]), "name": str(v.get("name", "")),
                        **({"position": int(v["position"])} if "position" in v else {})}
                    for k, v in (entry.get("outputs") or {}).items()},
    }


def publish(variants_dir: str | os.PathLike, variant: str, *, bucket: str, model: str,
            channel: str = PUBLISH.channel, report_dir: str | os.PathLike | None = None,
            dataset_dir: str | os.PathLike | None = None,
            decision_path: str | os.PathLike | None = None, min_app_version: str = "1.0.0",
            pipeline_run_id: str = "", parent_version: str | None | bool = True,
            version: str | None = None, include_coreml: bool = True,
            storage_client: Any = None, version_name: str | None = None) -> PublishResult:
    """Publish ``variant`` of the variants artifact as a new immutable version; returns it.

    parent_version: a version id, None for none, or True to look up the channel's current
    version. version_name: an optional name shown beside the version id (unique per model; a
    name already taken is refused before any file is uploaded). Side effects: uploads objects
    (create-only, manifest last). Raises ValueError if the version folder already holds anything,
    naming it.
    """
    if not bucket or "/" in bucket:
        raise ValueError(f"bucket {bucket!r} is not a bucket name")
    now = _dt.datetime.now(_dt.timezone.utc)
    version = version or mf.new_version(now)
    lookup_parent = parent_version is True
    with tempfile.TemporaryDirectory(prefix="edgeship-publish-") as work:
        manifest, uploads = build_manifest(  # validates every input before anything remote happens
            variants_dir, variant, model=model, channel=channel, version=version,
            created_at=_utc_iso(now), report_dir=report_dir, dataset_dir=dataset_dir,
            decision_path=decision_path, min_app_version=min_app_version,
            pipeline_run_id=pipeline_run_id,
            parent_version=None if lookup_parent else (parent_version or None),
            include_coreml=include_coreml, work_dir=work, version_name=version_name)
        return _upload_version(manifest, uploads, bucket=bucket, model=model, version=version,
                               channel=channel, lookup_parent=lookup_parent, storage_client=storage_client)


def write_local_copy(result: PublishResult, out_dir: str | os.PathLike) -> Path:
    """Write the published manifest to out_dir/manifest.json (KFP output artifact)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "manifest.json"
    with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp") as fh:
        json.dump(result.manifest, fh, indent=2, ensure_ascii=False)
    os.replace(fh.name, path)
    return path
