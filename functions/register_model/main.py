"""register_model: the Cloud Function (2nd gen) that registers published models in Firestore.

Trigger: Eventarc ``google.cloud.storage.object.v1.finalized`` on the model bucket (env
``MODEL_BUCKET``). The publisher writes ``gs://BUCKET/models/{model}/{version}/manifest.json``
last; its arrival commits the version. For each event this function:

1. validates the envelope: type, source (the model bucket), subject (the object), id, time (RFC 3339
   with a zone, not older than 24 h nor over 1 h ahead), and the object resource it uses (bucket, name, generation,
   size); anything malformed is acknowledged with one ``rejected`` log line naming field and value;
2. for ``models/{model}/{version}/manifest.json`` (names from a strict ASCII alphabet): reads that
   generation (bounded), parses it strictly (no NaN/Infinity, no duplicate keys, bounded depth,
   integers within +-(2^53-1) so within Firestore's int64, strings valid UTF-8), validates it
   against manifest.schema.json (shipped in this folder; integers must be JSON integers) and checks
   dates exist and it names its folder;
3. checks every listed file in the same folder: size as Cloud Storage reports it, sha256 of the
   bytes it reads itself (ranged, bounded reads of that generation; uploader metadata is ignored);
4. writes two create-only documents (docs/delivery.md): ``models/{model}/versions/{version}``
   (the full manifest) and then ``models/{model}/releases/{channel}-{version}``.

Late files: a manifest that lands before one of its files is ``pending`` (acknowledged, nothing
written). Every finalize of a file in a version folder re-checks that folder's manifest (if any,
and if it lists the file, and for at most ``REGISTER_MODEL_PENDING_WINDOW_S`` after the manifest was
written), so the version registers when its last file lands. Create-only writes keep it idempotent.

Delivery is at least once, in any order, concurrently: a redelivered identical manifest is a no-op,
a different manifest for an existing version is rejected, and a channel's current release (its
newest record) never moves backwards.

Errors: permanent problems are logged and acknowledged (HTTP 2xx); transient ones (a backend down,
a deadline) are logged as ``retry`` and answered 500 so Eventarc redelivers; so is anything
unexpected. Every Cloud Storage and Firestore call is bounded, and so is the whole event
(``REGISTER_MODEL_DEADLINE_S``, below the function's 60 s timeout). After a transient failure the
clients this module made are dropped (their gRPC channel closed), so the next delivery connects
afresh instead of waiting out a reconnect backoff. Requests that are not CloudEvents at all are
answered 400 (with a ``rejected`` log line) by a handler installed on functions-framework's app.
Clients are created on first use, never at import; tests inject their own with set_clients().
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import logging
import os
from collections.abc import Callable
from typing import Any

import functions_framework

from .clients import set_clients  # noqa: F401 - re-exported: tests and the local stack inject clients
from .clients import _gcs_opts, _recycle_clients, _storage, _transient_errors
from .decisions import _decision, _ensure_log_handler, _refusal
from .errors import ConfigError, Pending, Rejected, RetryableError
from .events import (
    ObjectEvent,
    parse_cloud_event,
    parse_file_name,
    parse_object,
    parse_object_name,
    parse_time,
)
from .objects import _load_manifest, check_files
from .records import _registered, register

__all__ = ["handle", "register_model", "set_clients"]  # the entry points (set_clients: tests, local stack)
from .settings import (
    MANIFEST_NAME,
    MAX_EVENT_AGE_S,
    MAX_EVENT_ID_CHARS,
    MAX_EVENT_SKEW_S,
    Config,
    _Budget,
    load_config,
)

log = logging.getLogger("register_model")


# ----------------------------------------------------------------------------------- errors


# ----------------------------------------------------------------------------------- config


# ----------------------------------------------------------------------------------- clients


# ----------------------------------------------------------------------------------- logging


# ----------------------------------------------------------------------------------- envelope


# ----------------------------------------------------------------------------------- paths


# ----------------------------------------------------------------------------------- manifest


# ----------------------------------------------------------------------------------- files


# ----------------------------------------------------------------------------------- records


def _verify_and_register(cfg: Config, budget: _Budget, bucket: str, model: str, version: str,
                         manifest: dict, raw: bytes, generation: int, ids: dict,
                         waiting_s: float | None = None) -> dict:
    sha = hashlib.sha256(raw).hexdigest()
    ids = {**ids, "channel": manifest["channel"], "generation": str(generation)}
    if _registered(cfg, budget, model, version, manifest["channel"], sha):
        return _decision("INFO", "duplicate", reason="identical manifest already registered", **ids)
    if waiting_s is not None and waiting_s > cfg.pending_window_s:
        raise Rejected(f"manifest has waited {waiting_s:.0f} s for its files, over the "
                       f"{cfg.pending_window_s:g} s window: publish the version again", "name", ids.get("object"))
    files = check_files(cfg, budget, bucket, model, version, manifest)
    v, r = register(cfg, budget, bucket, model, version, manifest, raw, files, generation)
    if v == "created":  # exactly one delivery creates the version record: one "registered" line
        return _decision("NOTICE", "registered", reason=f"version created, release {r}", **ids)
    return _decision("INFO", "duplicate", reason="identical manifest already registered"
                     + ("; its missing release record was created" if r == "created" else ""), **ids)


# ----------------------------------------------------------------------------------- handler

def _on_manifest(cfg: Config, budget: _Budget, obj: ObjectEvent, model: str, version: str,
                 ids: dict) -> dict:
    manifest, raw = _load_manifest(cfg, budget, obj, model, version)
    return _verify_and_register(cfg, budget, obj.bucket, model, version, manifest, raw,
                                obj.generation, ids)


def _on_file(cfg: Config, budget: _Budget, obj: ObjectEvent, model: str, version: str,
             file_name: str, ids: dict) -> dict:
    """A file landed in a version folder: if the folder's manifest lists it and is waiting for
    files (pending), re-check the manifest now. Anything else about the folder is ignored here:
    the manifest's own event reported it."""
    def ignored(why: str) -> dict:
        if log.isEnabledFor(logging.DEBUG):
            _decision("DEBUG", "ignored", reason=why, **ids)
        return {"decision": "ignored", "reason": why}

    manifest_name = f"models/{model}/{version}/{MANIFEST_NAME}"
    blob = _storage().bucket(obj.bucket).get_blob(manifest_name, **_gcs_opts(cfg, budget))
    if blob is None:
        return ignored("not a manifest; no manifest in its folder yet")
    current = ObjectEvent(obj.bucket, manifest_name, int(blob.generation), int(blob.size))
    try:
        manifest, raw = _load_manifest(cfg, budget, current, model, version)
    except Rejected as exc:
        return ignored(f"the folder's manifest is not valid ({exc}); its own event reported it")
    if file_name not in {f["path"] for f in manifest["files"]}:
        return ignored(f"{file_name!r} is not listed in the folder's manifest")
    created = blob.time_created
    waiting = (_dt.datetime.now(_dt.UTC) - created).total_seconds() if created else None
    ids = {**ids, "trigger": f"late file {file_name}", "object": f"gs://{obj.bucket}/{manifest_name}"}
    return _verify_and_register(cfg, budget, obj.bucket, model, version, manifest, raw,
                                current.generation, ids, waiting_s=waiting)


def _process(obj: ObjectEvent, cfg: Config, budget: _Budget) -> dict:
    base = {"event_id": obj.event_id, "object": f"gs://{obj.bucket}/{obj.name}"[:300]}
    if obj.time is not None:
        age = (_dt.datetime.now(_dt.UTC) - obj.time).total_seconds()
        if age > MAX_EVENT_AGE_S:
            return _decision("ERROR", "dropped", reason=f"event is {age:.0f} s old (> {MAX_EVENT_AGE_S})",
                             field="time", value=obj.time.isoformat(), **base)
        if age < -MAX_EVENT_SKEW_S:
            return _decision("ERROR", "rejected", reason=f"event time is {-age:.0f} s in the future "
                             f"(> {MAX_EVENT_SKEW_S} s of clock skew)", field="time",
                             value=obj.time.isoformat(), **base)
    try:
        parsed = parse_object_name(obj.name)
    except Rejected as exc:
        return _refusal("ERROR", "rejected", exc, base)
    if parsed is not None:
        model, version = parsed
        ids = {"model": model, "version": version, **base}
        work = functools.partial(_on_manifest, cfg, budget, obj, model, version, ids)
    elif (in_folder := parse_file_name(obj.name)) is not None:
        model, version, file_name = in_folder
        ids = {"model": model, "version": version, **base}
        work = functools.partial(_on_file, cfg, budget, obj, model, version, file_name, ids)
    else:
        if log.isEnabledFor(logging.DEBUG):
            _decision("DEBUG", "ignored", reason="not in a version folder", **base)
        return {"decision": "ignored"}
    transient = _transient_errors()
    try:
        return work()
    except Rejected as exc:
        return _refusal("ERROR", "rejected", exc, ids)
    except Pending as exc:
        return _refusal("WARNING", "pending", exc, ids)
    except transient as exc:
        _decision("WARNING", "retry", reason=f"transient: {type(exc).__name__}: {str(exc)[:300]}", **ids)
        _recycle_clients()
        raise RetryableError(f"transient: {type(exc).__name__}") from exc


def _run(parse: Callable[[Config], ObjectEvent], model_bucket: str | None, event_id: Any) -> dict:
    """Parse, then process; every failure that is not the event's fault becomes RetryableError."""
    _ensure_log_handler()
    event_id = event_id[:MAX_EVENT_ID_CHARS] if isinstance(event_id, str) else None
    try:
        cfg = load_config(model_bucket)
        budget = _Budget(cfg.deadline_s)
        try:
            obj = parse(cfg)
        except Rejected as exc:
            return _refusal("ERROR", "rejected", exc, {"event_id": event_id})
        return _process(obj, cfg, budget)
    except RetryableError:
        raise
    except ConfigError as exc:
        _decision("CRITICAL", "retry", reason=f"misconfigured: {exc}", event_id=event_id)
        raise RetryableError(str(exc)) from exc
    except Exception as exc:  # a bug or a permission error: never drop the event silently
        _decision("ERROR", "retry", reason=f"unexpected: {type(exc).__name__}: {str(exc)[:300]}",
                  event_id=event_id)
        _recycle_clients()
        raise RetryableError(f"unexpected: {type(exc).__name__}") from exc


def handle(data: Any, event_id: str | None = None, event_time: str | None = None, *,
           model_bucket: str | None = None) -> dict:
    """Process one finalized object resource (what a finalize event carries as data) in-process.

    For callers that vouch for the envelope (tests, tools): no type/source/subject checks. The model
    bucket is ``model_bucket``, else env MODEL_BUCKET, else the resource's own bucket. Returns the
    logged decision record; raises RetryableError on transient errors.
    """
    own = data.get("bucket") if isinstance(data, dict) else None
    bucket = model_bucket or os.environ.get("MODEL_BUCKET") or (own if isinstance(own, str) else None)

    def parse(cfg: Config) -> ObjectEvent:
        obj = parse_object(data, cfg)
        when = parse_time(event_time, "time") if event_time is not None else None
        return ObjectEvent(obj.bucket, obj.name, obj.generation, obj.size,
                           event_id if isinstance(event_id, str) else None, when)

    return _run(parse, bucket, event_id)


@functions_framework.cloud_event
def register_model(cloud_event) -> None:
    """Entry point: a ``google.cloud.storage.object.v1.finalized`` CloudEvent."""
    event_id = cloud_event.get("id") if hasattr(cloud_event, "get") else None
    _run(lambda cfg: parse_cloud_event(cloud_event, cfg), None, event_id)


# ----------------------------------------------------------------------------------- HTTP layer

def _http_error(exc: BaseException):
    """functions-framework's app error handler: 500 only for what the function itself raised
    (transient, retried); anything the framework or the CloudEvents SDK could not read is not a
    CloudEvent: 400 with one rejected log line (a 500 would be redelivered for 24 h)."""
    import flask
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, RetryableError):
        return f"retry: {exc}\n", 500
    if isinstance(exc, HTTPException):
        if (exc.code or 500) < 500 and flask.request.method == "POST":
            _ensure_log_handler()
            _decision("ERROR", "rejected", reason=f"not a CloudEvent this function reads (HTTP {exc.code})",
                      field="request", value=flask.request.get_data()[:80])
        return exc
    _ensure_log_handler()
    _decision("ERROR", "rejected", reason=f"not a CloudEvent: {type(exc).__name__}: {str(exc)[:200]}",
              field="request", value=flask.request.get_data()[:80])
    return "not a CloudEvent this function reads\n", 400


def _install_http_guard() -> None:
    """functions-framework loads this module inside its Flask app's context: hook the app."""
    try:
        import flask
    except ImportError:  # pragma: no cover - functions-framework depends on Flask
        return
    if flask.has_app_context():
        flask.current_app.register_error_handler(Exception, _http_error)


_install_http_guard()
