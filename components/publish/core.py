"""publish: upload one chosen variant to an immutable version folder; channel control (rollback,
pause, resume); read what a channel currently serves.

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
import getpass
import hashlib
import json
import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeship import manifest as mf

log = logging.getLogger(__name__)

MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
REPORT_FILE = "report.json"
DECISION_FILE = "decision.json"
MANIFEST_FILE = "manifest.json"
CONTENT_TYPES = {"tflite": "application/octet-stream", "coreml": "application/zip",
                 "labels": "text/plain; charset=utf-8", "report": "application/json",
                 "decision": "application/json"}
FIRESTORE_TIMEOUT_S = 10.0


@dataclass
class PublishResult:
    """What was published: the version id, its folder URI and the manifest written last."""
    version: str
    uri: str
    manifest: dict
    objects: list[str] = field(default_factory=list)


@dataclass
class _Upload:
    local: Path
    name: str
    format: str
    quantization: str | None
    size: int = 0
    sha256: str = ""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def _utc_iso(now: _dt.datetime) -> str:
    return now.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_manifest(variants_dir: str | os.PathLike, variant: str, *, model: str, channel: str,
                   version: str, created_at: str, report_dir: str | os.PathLike | None = None,
                   dataset_dir: str | os.PathLike | None = None,
                   decision_path: str | os.PathLike | None = None, min_app_version: str = "1.0.0",
                   pipeline_run_id: str = "", parent_version: str | None = None,
                   include_coreml: bool = True) -> tuple[dict, list[_Upload]]:
    """Validate the inputs and build the manifest plus the list of files to upload (no I/O remote).

    Raises ValueError / FileNotFoundError naming the bad value and the file it came from.
    """
    mf.check_name(model, "model name")
    mf.check_channel(channel)
    mf.check_version(version)
    mf.app_version_tuple(min_app_version, "min_app_version")
    if parent_version is not None:
        mf.check_version(parent_version, "parent_version")
    vdir = Path(variants_dir)
    vjson_path = vdir / "variants.json"
    vjson = _read_json(vjson_path, "variants artifact's variants.json")
    entries = {v.get("name"): v for v in vjson.get("variants", []) if isinstance(v, dict)}
    if variant not in entries:
        raise ValueError(f"variant {variant!r} is not in {vjson_path} (has {sorted(map(str, entries))})")
    entry = entries[variant]
    for key in ("file", "input", "outputs"):
        if key not in entry:
            raise ValueError(f"variant {variant!r} in {vjson_path} has no {key!r}")
    uploads = [_Upload(vdir / entry["file"], MODEL_FILE, "tflite", entry.get("scheme") or variant)]
    if include_coreml:
        for cm in vjson.get("coreml", []) or []:
            path = vdir / str(cm.get("file", ""))
            if cm.get("file") and path.is_file():
                uploads.append(_Upload(path, path.name, "coreml", cm.get("name")))
            else:
                log.warning("Core ML package %s listed in %s is absent: not published", path, vjson_path)
    labels_path = vdir / LABELS_FILE
    if not labels_path.is_file():
        raise FileNotFoundError(f"labels file not found: {labels_path} (the variants artifact must have it)")
    labels = [line.strip() for line in labels_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not labels:
        raise ValueError(f"labels file {labels_path} is empty")
    uploads.append(_Upload(labels_path, LABELS_FILE, "labels", None))

    metrics: dict[str, Any] = {"map": None, "map50": None, "delta_map_vs_float": None,
                               "size_bytes": 0, "latency_ms": None}
    fingerprint = None
    if report_dir is not None:
        report_path = Path(report_dir) / "report.json"
        report = _read_json(report_path, "evaluation report")
        row = (report.get("variants") or {}).get(variant)
        if row is None:
            raise ValueError(f"variant {variant!r} has no row in {report_path} "
                             f"(has {sorted((report.get('variants') or {}))})")
        lat = ((row.get("latency_ms") or {}).get("threads_1") or {}).get("median")
        metrics.update({k: (float(row[k]) if row.get(k) is not None else None)
                        for k in ("map", "map50", "delta_map_vs_float")})
        metrics["latency_ms"] = float(lat) if lat is not None else None
        fingerprint = report.get("dataset_fingerprint")
        uploads.append(_Upload(report_path, REPORT_FILE, "report", None))
    if dataset_dir is not None and fingerprint is None:
        ds = Path(dataset_dir) / "dataset.json"
        if ds.is_file():
            fingerprint = _read_json(ds, "dataset.json").get("fingerprint")
    if decision_path is not None:
        dpath = Path(decision_path)
        if dpath.is_dir():
            dpath = dpath / DECISION_FILE
        if not dpath.is_file():
            raise FileNotFoundError(f"gate decision not found: {dpath}")
        uploads.append(_Upload(dpath, DECISION_FILE, "decision", None))

    for up in uploads:
        if not up.local.is_file():
            raise FileNotFoundError(f"file to publish not found: {up.local} (listed in {vjson_path})")
        up.size = up.local.stat().st_size
        up.sha256 = sha256_file(up.local)
    metrics["size_bytes"] = uploads[0].size

    inp = entry["input"]
    manifest = {
        "schema_version": mf.SCHEMA_VERSION, "model": model, "version": version,
        "created_at": created_at, "channel": channel, "variant": variant,
        "files": [{"path": u.name, "format": u.format, "size": u.size, "sha256": u.sha256,
                   "quantization": u.quantization} for u in uploads],
        "input": {"name": str(inp.get("name", "")), "shape": list(inp.get("shape", [])),
                  "dtype": inp.get("dtype"), "scale": inp.get("scale"),
                  "zero_point": inp.get("zero_point"),
                  "normalization": str(inp.get("normalization", ""))},
        "outputs": {k: {"index": int(v["index"]), "name": str(v.get("name", "")),
                        **({"position": int(v["position"])} if "position" in v else {})}
                    for k, v in (entry.get("outputs") or {}).items()},
        "labels": labels, "metrics": metrics, "min_app_version": min_app_version,
        "pipeline_run_id": str(pipeline_run_id or ""),
        "dataset_fingerprint": fingerprint, "parent_version": parent_version,
    }
    mf.validate(manifest, source=f"manifest built from {vjson_path} (variant {variant!r})")
    return manifest, uploads


def publish(variants_dir: str | os.PathLike, variant: str, *, bucket: str, model: str,
            channel: str = "stable", report_dir: str | os.PathLike | None = None,
            dataset_dir: str | os.PathLike | None = None,
            decision_path: str | os.PathLike | None = None, min_app_version: str = "1.0.0",
            pipeline_run_id: str = "", parent_version: str | None | bool = True,
            version: str | None = None, include_coreml: bool = True,
            storage_client: Any = None) -> PublishResult:
    """Publish ``variant`` of the variants artifact as a new immutable version; returns it.

    parent_version: a version id, None for none, or True to look up the channel's current
    version. Side effects: uploads objects (create-only, manifest last). Raises ValueError if the
    version folder already holds anything, naming it.
    """
    from google.api_core import exceptions as gexc

    if not bucket or "/" in bucket:
        raise ValueError(f"bucket {bucket!r} is not a bucket name")
    now = _dt.datetime.now(_dt.timezone.utc)
    version = version or mf.new_version(now)
    lookup_parent = parent_version is True
    manifest, uploads = build_manifest(  # validates every input before anything remote happens
        variants_dir, variant, model=model, channel=channel, version=version,
        created_at=_utc_iso(now), report_dir=report_dir, dataset_dir=dataset_dir,
        decision_path=decision_path, min_app_version=min_app_version,
        pipeline_run_id=pipeline_run_id,
        parent_version=None if lookup_parent else (parent_version or None),
        include_coreml=include_coreml)
    if lookup_parent:
        current = current_release_manifest(model, channel, bucket=bucket)
        manifest["parent_version"] = current.get("version") if current else None
        mf.validate(manifest, source=f"manifest of {model} {version}")
    client = storage_client or _storage_client()
    gbucket = client.bucket(bucket)
    prefix = f"models/{model}/{version}/"
    uri = f"gs://{bucket}/{prefix}"
    if any(True for _ in client.list_blobs(bucket, prefix=prefix, max_results=1)):
        raise ValueError(f"version {version} of {model} already exists at {uri}: versions are immutable")
    done: list[str] = []
    try:
        for up in uploads:
            blob = gbucket.blob(prefix + up.name)
            blob.metadata = {"sha256": up.sha256, "edgeship-version": version}
            blob.upload_from_filename(str(up.local), content_type=CONTENT_TYPES[up.format],
                                      if_generation_match=0)
            done.append(prefix + up.name)
            log.info("uploaded gs://%s/%s (%d bytes)", bucket, prefix + up.name, up.size)
        body = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
        blob = gbucket.blob(prefix + MANIFEST_FILE)
        blob.metadata = {"sha256": hashlib.sha256(body).hexdigest(), "edgeship-version": version}
        blob.upload_from_string(body, content_type="application/json", if_generation_match=0)
    except gexc.PreconditionFailed as exc:
        _cleanup(gbucket, done)
        raise ValueError(f"an object of version {version} already exists under {uri}: "
                         "versions are immutable") from exc
    except BaseException:
        _cleanup(gbucket, done)
        raise
    log.info("published %s version %s to channel %s: %s (manifest written last)",
             model, version, channel, uri)
    return PublishResult(version=version, uri=uri, manifest=manifest,
                         objects=[f"gs://{bucket}/{n}" for n in done + [prefix + MANIFEST_FILE]])


def _cleanup(gbucket, names: list[str]) -> None:
    """Delete the objects a failed publish uploaded (no manifest was written, so none is visible)."""
    for name in names:
        try:
            gbucket.blob(name).delete()
        except Exception as exc:  # noqa: BLE001 - best effort; the folder has no manifest anyway
            log.warning("could not delete gs://%s/%s after a failed publish: %s", gbucket.name, name, exc)


def _storage_client():
    from edgeship import storage

    return storage.gcs_client()


def _retry():
    """Retry transient Firestore errors for at most FIRESTORE_TIMEOUT_S in all (not the 60 s default)."""
    from google.api_core import exceptions as gexc
    from google.api_core import retry as gretry

    return gretry.Retry(predicate=gretry.if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded),
                        initial=0.1, maximum=1.0, multiplier=2.0, timeout=FIRESTORE_TIMEOUT_S)


def firestore_client():
    """A Firestore client for the project in GOOGLE_CLOUD_PROJECT (the emulator when set)."""
    from google.cloud import firestore

    return firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)


# -------------------------------------------------------------------------------- reading channels

def newest_release(db, model: str, channel: str) -> dict | None:
    """The channel's newest release record (the function's create-only records), or None."""
    query = (db.collection("models").document(model).collection("releases")
             .where(filter=_field_filter("channel", "==", channel))
             .order_by("version", direction="DESCENDING").limit(1))
    docs = list(query.stream(retry=_retry(), timeout=FIRESTORE_TIMEOUT_S))
    return docs[0].to_dict() if docs else None


def _field_filter(path: str, op: str, value: Any):
    from google.cloud.firestore_v1.base_query import FieldFilter

    return FieldFilter(path, op, value)


def channel_state(db, model: str, channel: str) -> dict:
    """The operator control document of a channel ({} when never written)."""
    snap = (db.collection("models").document(model).collection("channels").document(channel)
            .get(retry=_retry(), timeout=FIRESTORE_TIMEOUT_S))
    return snap.to_dict() or {} if snap.exists else {}


def current_version(db, model: str, channel: str) -> str | None:
    """What the channel serves: the pinned version if an operator pinned one, else the newest."""
    state = channel_state(db, model, channel)
    if state.get("pinned_version"):
        return state["pinned_version"]
    newest = newest_release(db, model, channel)
    return newest["version"] if newest else None


def current_release_manifest(model_name: str, channel: str, bucket: str | None = None) -> dict | None:
    """The manifest of the version the channel currently serves (for the gate's champion).

    Reads Firestore; when Firestore cannot be reached and a bucket is given, falls back to the
    newest manifest for the channel in Cloud Storage. None when nothing was published.
    """
    try:
        db = firestore_client()
        version = current_version(db, model_name, channel)
        if version is None:
            return None
        snap = (db.collection("models").document(model_name).collection("versions").document(version)
                .get(retry=_retry(), timeout=FIRESTORE_TIMEOUT_S))
        return (snap.to_dict() or {}).get("manifest") if snap.exists else None
    except Exception as exc:  # noqa: BLE001 - registry unreachable: fall back to the bucket
        if not bucket:
            raise
        log.warning("Firestore registry unreadable (%s: %s); reading manifests from gs://%s",
                    type(exc).__name__, exc, bucket)
    from edgeship import storage

    prefix = f"gs://{bucket}/models/{model_name}/"
    manifests = sorted((u for u in storage.list_files(prefix) if u.endswith("/manifest.json")
                        and u[len(prefix):].count("/") == 1), reverse=True)
    for uri in manifests:
        try:
            data = json.loads(storage.read_bytes(uri))
        except (ValueError, FileNotFoundError):
            continue
        if data.get("channel") == channel:
            return data
    return None


# -------------------------------------------------------------------------------- channel control

def operator_identity() -> str:
    """Who acts: $EDGESHIP_OPERATOR, else user@host."""
    who = os.environ.get("EDGESHIP_OPERATOR")
    if who:
        return who
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def channel_action(action: str, model: str, channel: str, *, reason: str, to: str | None = None,
                   who: str | None = None, db=None) -> dict:
    """Apply an operator action to ``models/{model}/channels/{channel}`` and return the new state.

    action: ``rollback`` (pin ``to``, default: the release before the one now served),
    ``pause`` (the kill switch: clients keep what they hold), ``resume`` (clear pause and pin:
    follow the newest release again). Every action appends {action, version, by, at, reason} to
    the document's history. Raises ValueError naming a bad model/channel/version/reason.
    """
    from google.cloud import firestore

    mf.check_name(model, "model name")
    mf.check_channel(channel)
    if action not in ("rollback", "pause", "resume"):
        raise ValueError(f"channel action {action!r} is not one of rollback, pause, resume")
    if not reason or not reason.strip():
        raise ValueError(f"--reason is required for channel {action} (who, when and why are recorded)")
    db = db or firestore_client()
    model_ref = db.collection("models").document(model)
    state = channel_state(db, model, channel)
    target = None
    if action == "rollback":
        if to is not None:
            mf.check_version(to, "--to")
            snap = model_ref.collection("releases").document(mf.release_id(channel, to)).get(
                retry=_retry(), timeout=FIRESTORE_TIMEOUT_S)
            if not snap.exists:
                raise ValueError(f"--to {to}: no release of {model} on channel {channel!r} has that version")
            target = to
        else:
            serving = state.get("pinned_version") or (newest_release(db, model, channel) or {}).get("version")
            if serving is None:
                raise ValueError(f"channel {channel!r} of {model} has no release to roll back from")
            older = list(model_ref.collection("releases")
                         .where(filter=_field_filter("channel", "==", channel))
                         .where(filter=_field_filter("version", "<", serving))
                         .order_by("version", direction="DESCENDING").limit(1)
                         .stream(retry=_retry(), timeout=FIRESTORE_TIMEOUT_S))
            if not older:
                raise ValueError(f"channel {channel!r} of {model}: nothing older than {serving} to roll back to")
            target = older[0].to_dict()["version"]
    who = who or operator_identity()
    now = _utc_iso(_dt.datetime.now(_dt.timezone.utc))
    entry = {"action": action, "version": target, "by": who, "at": now, "reason": reason.strip()}
    new = {
        "model": model, "channel": channel,
        "paused": action == "pause",
        "pinned_version": target if action == "rollback" else
        (state.get("pinned_version") if action == "pause" else None),
        "updated_by": who, "updated_at": now, "updated_at_server": firestore.SERVER_TIMESTAMP,
        "reason": reason.strip(), "last_action": action,
        "history": list(state.get("history") or [])[-99:] + [entry],
    }
    model_ref.collection("channels").document(channel).set(new, retry=_retry(), timeout=FIRESTORE_TIMEOUT_S)
    log.info("channel %s/%s: %s%s by %s: %s", model, channel, action,
             f" to {target}" if target else "", who, reason)
    return {k: v for k, v in new.items() if k != "updated_at_server"}


def show_channel(model: str, channel: str, *, db=None, limit: int = 10) -> dict:
    """The channel's control state, what it serves, and its newest releases."""
    mf.check_name(model, "model name")
    mf.check_channel(channel)
    db = db or firestore_client()
    state = channel_state(db, model, channel)
    releases = [d.to_dict() for d in db.collection("models").document(model).collection("releases")
                .where(filter=_field_filter("channel", "==", channel))
                .order_by("version", direction="DESCENDING").limit(limit).stream(retry=_retry(), timeout=FIRESTORE_TIMEOUT_S)]
    serving = state.get("pinned_version") or (releases[0]["version"] if releases else None)
    return {"model": model, "channel": channel, "serving": serving,
            "paused": bool(state.get("paused")), "pinned_version": state.get("pinned_version"),
            "history": state.get("history") or [],
            "releases": [{k: r.get(k) for k in ("version", "created_at", "min_app_version", "variant")}
                         for r in releases]}


def write_local_copy(result: PublishResult, out_dir: str | os.PathLike) -> Path:
    """Write the published manifest to out_dir/manifest.json (KFP output artifact)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "manifest.json"
    with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp") as fh:
        json.dump(result.manifest, fh, indent=2, ensure_ascii=False)
    os.replace(fh.name, path)
    return path
