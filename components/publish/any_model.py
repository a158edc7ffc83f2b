"""Publish any model without the pipeline: ``edgeship publish PATH --model NAME --task TASK``.

PATH is one .tflite (any file that is not a Core ML package is read as one) and optionally Core ML
packages (``NAME.mlpackage`` folders or their ``.mlpackage.zip``) published beside it. Before
anything remote happens every input is checked (edgeship/delivery/model_files.py): the .tflite is
a TFLite flatbuffer LiteRT loads, its outputs fit the task (a detector's boxes/classes/scores/count,
a classifier's [1, K] scores, a segmenter's [1, H, W(, C)] mask), the labels' count matches the
classes, a Core ML zip holds an .mlpackage with its Manifest.json, the version name is free. The
manifest records ``task`` and, for non-detectors, every output tensor as LiteRT reports it.

The file is published byte for byte: TFLite Model Metadata is written only by the pipeline's
publish (core.py) for its own detectors, never here. Uploads go through upload.py (create-only,
manifest last, version name claimed first).
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from components.publish.settings import PUBLISH
from components.publish.upload import (
    PublishResult,
    Upload,
    check_version_name_free,
    hash_uploads,
    manifest_files,
    upload_version,
)
from edgeship.contracts import manifest as mf
from edgeship.delivery import model_files
from edgeship.delivery.registry import _utc_iso, current_release_manifest

log = logging.getLogger(__name__)

MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
STANDALONE_VARIANT = "standalone"


def split_paths(paths: Iterable[str | os.PathLike]) -> tuple[Path, list[Path]]:
    """(the .tflite, the Core ML packages) of PATH arguments; ModelFileError unless exactly one
    model file is not a Core ML package."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise model_files.ModelFileError("give the model to publish: a .tflite (and optionally .mlpackage)")
    coreml = [p for p in paths if model_files.is_coreml_path(p)]
    tflite = [p for p in paths if not model_files.is_coreml_path(p)]
    if not tflite:
        raise model_files.ModelFileError(
            f"{[str(p) for p in coreml]}: a version needs a .tflite too (clients install the .tflite; "
            "Core ML packages are published beside it for iOS apps)")
    if len(tflite) > 1:
        raise model_files.ModelFileError(f"one .tflite per version, got {[str(p) for p in tflite]}")
    return tflite[0], coreml


def check_metadata(*, task: str, tags: Iterable[str] | None, display_name: str | None,
                   version_name: str | None) -> list[str]:
    """ValueError for a bad task, tag, display name or version name; returns the tags as a list."""
    mf.check_task(task, "--task")
    tags = mf.check_tags(tags, "--tags")
    if display_name is not None and not (isinstance(display_name, str) and 0 < len(display_name) <= 128):
        raise ValueError(f"display name {display_name!r} must be 1-128 characters")
    if version_name is not None:
        mf.check_version_name(version_name, "--version-name")
    return tags


def build_model_manifest(paths: Iterable[str | os.PathLike], *, task: str, model: str, channel: str,
                         version: str, created_at: str, work_dir: str | os.PathLike,
                         labels_path: str | os.PathLike | None = None, tags: Iterable[str] | None = None,
                         display_name: str | None = None, version_name: str | None = None,
                         min_app_version: str = PUBLISH.min_app_version, parent_version: str | None = None,
                         variant: str = STANDALONE_VARIANT, pipeline_run_id: str = "",
                         ) -> tuple[dict, list[Upload]]:
    """Check every input and build the manifest plus the files to upload (nothing remote).

    Raises ValueError (ModelFileError for the files) / FileNotFoundError naming what is wrong."""
    mf.check_name(model, "model name")
    mf.check_channel(channel)
    mf.check_version(version)
    mf.app_version_tuple(min_app_version, "min_app_version")
    if parent_version is not None:
        mf.check_version(parent_version, "parent_version")
    tags = check_metadata(task=task, tags=tags, display_name=display_name, version_name=version_name)
    tflite, coreml = split_paths(paths)
    info = model_files.inspect_tflite(tflite)
    labels = model_files.read_labels(labels_path) if labels_path is not None else []
    model_files.check_labels_fit(info, task, labels, Path(labels_path) if labels_path else None)
    spec = model_files.io_spec(info, task)
    uploads = [Upload(tflite, MODEL_FILE, "tflite", info.quantization)]
    for package in coreml:
        zipped = model_files.coreml_package(package, work_dir)
        uploads.append(Upload(zipped, zipped.name, "coreml", None))
    if labels:
        uploads.append(Upload(Path(labels_path), LABELS_FILE, "labels", None))
    names = [u.name for u in uploads]
    if len(set(names)) != len(names):
        raise model_files.ModelFileError(f"two files would be published under one name: {names}")
    hash_uploads(uploads, tflite)
    manifest = {
        "schema_version": mf.SCHEMA_VERSION, "task": task, "model": model, "version": version,
        "created_at": created_at, "channel": channel, "variant": variant,
        "files": manifest_files(uploads), **spec, "labels": labels,
        "metrics": {"map": None, "map50": None, "delta_map_vs_float": None,
                    "size_bytes": uploads[0].size, "latency_ms": None},
        "min_app_version": min_app_version, "pipeline_run_id": str(pipeline_run_id or ""),
        "dataset_fingerprint": None, "parent_version": parent_version,
        **({"tags": tags} if tags else {}),
        **({"display_name": display_name} if display_name else {}),
        **({"version_name": version_name} if version_name else {}),
    }
    mf.validate(manifest, source=f"manifest for {tflite}")
    return manifest, uploads


def channel_parent(model: str, channel: str, task: str, bucket: str) -> str | None:
    """The version the channel serves now (the new version's parent); ValueError when it serves a
    model of another task under this name (its apps could not run the new one)."""
    current = current_release_manifest(model, channel, bucket=bucket)
    if current is None:
        return None
    if mf.task_of(current) != task:
        raise ValueError(f"{model} on channel {channel!r} serves a {mf.task_of(current)} "
                         f"(version {current.get('version')}); publishing a {task} under the same name "
                         "would break the apps that run it: use another --model")
    return current.get("version")


def publish_model(paths: Iterable[str | os.PathLike], *, bucket: str, model: str, task: str,
                  channel: str = PUBLISH.channel, labels_path: str | os.PathLike | None = None,
                  tags: Iterable[str] | None = None, display_name: str | None = None,
                  version_name: str | None = None, min_app_version: str = PUBLISH.min_app_version,
                  variant: str = STANDALONE_VARIANT, version: str | None = None,
                  storage_client: Any = None) -> PublishResult:
    """Publish a standalone model as a new immutable version of ``model`` on ``channel``.

    Every input is checked before anything is uploaded (see the module doc); then the channel's
    current version is read (the parent; a different task there is refused) and the version name
    checked free; then the files are uploaded create-only, the manifest last."""
    if not bucket or "/" in bucket:
        raise ValueError(f"bucket {bucket!r} is not a bucket name")
    now = _dt.datetime.now(_dt.timezone.utc)
    version = version or mf.new_version(now)
    with tempfile.TemporaryDirectory(prefix="edgeship-publish-") as work:
        manifest, uploads = build_model_manifest(
            paths, task=task, model=model, channel=channel, version=version, created_at=_utc_iso(now),
            work_dir=work, labels_path=labels_path, tags=tags, display_name=display_name,
            version_name=version_name, min_app_version=min_app_version, variant=variant)
        check_version_name_free(bucket, model, version_name, storage_client)
        manifest["parent_version"] = channel_parent(model, channel, task, bucket)
        mf.validate(manifest, source=f"manifest of {model} {version}")
        return upload_version(manifest, uploads, bucket=bucket, model=model, version=version,
                              channel=channel, lookup_parent=False, storage_client=storage_client)
