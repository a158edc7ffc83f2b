"""register_model: the Cloud Function (2nd gen) that registers published models in Firestore.

Trigger: Eventarc ``google.cloud.storage.object.v1.finalized`` on the model bucket (env
``MODEL_BUCKET``). The publisher writes ``gs://BUCKET/models/{model}/{version}/manifest.json``
last; its arrival commits the version. For each event this function:

1. validates the envelope: type, source (the model bucket), subject (the object), id, time (RFC 3339
   with a zone, not older than 24 h), and the object resource it uses (bucket, name, generation,
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
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import functions_framework

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
EVENT_TYPE = "google.cloud.storage.object.v1.finalized"
SOURCE_PREFIX = "//storage.googleapis.com/projects/_/buckets/"
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 256 * 1024        # a real manifest is a few KB
MAX_JSON_DEPTH = 16                    # a valid manifest nests 3 deep
MAX_OBJECT_NAME_BYTES = 1024           # Cloud Storage's own limit
MAX_EVENT_ID_CHARS = 256
MAX_EVENT_AGE_S = 24 * 3600            # Eventarc stops retrying after 24 h; drop anything older
INT64_MAX = 2 ** 63 - 1                # generation and size of an object (the JSON API's int64)
MAX_SAFE_INT = 2 ** 53 - 1             # manifest integers: I-JSON (RFC 7493) interoperable range
HASH_CHUNK_BYTES = 8 * 1024 * 1024
NAME_RE = re.compile(r"^(?!.*\.\.)[a-z0-9][a-z0-9._-]{0,62}$")
FILE_RE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")   # the schema's file path
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
UINT_RE = re.compile(r"^(0|[1-9][0-9]{0,18})$")
RFC3339_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                        r"(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$")
CREATED_AT_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
                           r"(?:\.[0-9]{1,6})?Z$")

# Defaults of the tunables (env REGISTER_MODEL_<NAME>); each is checked when an event arrives.
FIRESTORE_TIMEOUT_S = 10.0             # per Firestore call, retries included
STORAGE_TIMEOUT_S = 10.0               # per Cloud Storage call, retries included
DEADLINE_S = 40.0                      # the whole event; the function's timeout is 60 s
PENDING_WINDOW_S = 24 * 3600.0         # how long a manifest waits for late files
MAX_VERIFY_BYTES = 512 * 1024 * 1024   # listed files' total size the function will hash

log = logging.getLogger("register_model")
_NOTHING = object()


# ----------------------------------------------------------------------------------- errors

class Rejected(Exception):
    """A permanent problem with the event or the manifest: log, acknowledge, never retry."""

    def __init__(self, reason: str, field: str | None = None, value: Any = _NOTHING) -> None:
        super().__init__(reason)
        self.field = field
        self.value = value


class Pending(Exception):
    """Listed files are not there yet: acknowledge; a later finalize in the folder re-checks."""

    def __init__(self, reason: str, field: str | None = None, value: Any = _NOTHING) -> None:
        super().__init__(reason)
        self.field = field
        self.value = value


class DeadlineExceeded(Exception):
    """The event's time budget is spent: transient (the event is redelivered)."""


class ConfigError(RuntimeError):
    """The function is deployed without a valid configuration (e.g. MODEL_BUCKET)."""


class RetryableError(Exception):
    """Raised out of the entry point: functions-framework answers 500 and Eventarc redelivers."""


# ----------------------------------------------------------------------------------- config

@dataclass(frozen=True)
class Config:
    model_bucket: str
    firestore_timeout_s: float = FIRESTORE_TIMEOUT_S
    storage_timeout_s: float = STORAGE_TIMEOUT_S
    deadline_s: float = DEADLINE_S
    pending_window_s: float = PENDING_WINDOW_S
    max_verify_bytes: int = MAX_VERIFY_BYTES


def _env_number(key: str, default: float, lo: float, hi: float) -> float:
    raw = os.environ.get(f"REGISTER_MODEL_{key}")
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ConfigError(f"REGISTER_MODEL_{key}={raw!r} is not a number in [{lo:g}, {hi:g}]")
    return value


def load_config(model_bucket: str | None = None) -> Config:
    """The configuration from the environment; raises ConfigError (answered 500) if invalid."""
    bucket = model_bucket if model_bucket is not None else os.environ.get("MODEL_BUCKET", "")
    if not BUCKET_RE.match(bucket or ""):
        raise ConfigError(f"MODEL_BUCKET={bucket!r} is not a bucket name: set it to the bucket "
                          "whose releases this function registers")
    return Config(
        model_bucket=bucket,
        firestore_timeout_s=_env_number("FIRESTORE_TIMEOUT_S", FIRESTORE_TIMEOUT_S, 0.1, 60),
        storage_timeout_s=_env_number("STORAGE_TIMEOUT_S", STORAGE_TIMEOUT_S, 0.1, 60),
        deadline_s=_env_number("DEADLINE_S", DEADLINE_S, 1, 3600),
        pending_window_s=_env_number("PENDING_WINDOW_S", PENDING_WINDOW_S, 0, 30 * 86400),
        max_verify_bytes=int(_env_number("MAX_VERIFY_BYTES", MAX_VERIFY_BYTES, 0, 2 ** 40)))


class _Budget:
    """The event's time budget: every backend call gets min(its own cap, what is left)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def take(self, cap: float) -> float:
        left = self.end - time.monotonic()
        if left <= 0.05:
            raise DeadlineExceeded(f"the event's {self.seconds:g} s budget is spent")
        return min(cap, left)


# ----------------------------------------------------------------------------------- clients

class _Clients:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.firestore: Any = None
        self.storage: Any = None
        self.injected = False


_clients = _Clients()


def set_clients(firestore_client: Any = None, storage_client: Any = None) -> None:
    """Inject clients (tests, local stack). None resets to lazy creation."""
    with _clients.lock:
        _clients.firestore = firestore_client
        _clients.storage = storage_client
        _clients.injected = firestore_client is not None or storage_client is not None


def _firestore():
    with _clients.lock:
        if _clients.firestore is None:
            from google.cloud import firestore

            _clients.firestore = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))
        return _clients.firestore


def _storage():
    with _clients.lock:
        if _clients.storage is None:
            from google.cloud import storage

            if os.environ.get("STORAGE_EMULATOR_HOST"):
                from google.auth.credentials import AnonymousCredentials

                _clients.storage = storage.Client(
                    project=os.environ.get("GOOGLE_CLOUD_PROJECT") or "edgeship-local",
                    credentials=AnonymousCredentials())
            else:
                _clients.storage = storage.Client()
        return _clients.storage


def _recycle_clients() -> None:
    """After a transient failure: drop the clients this module made, closing the Firestore channel.

    gRPC keeps a failed connection in an exponential reconnect backoff (up to minutes), shared by
    every channel to the same target in the process; a closed channel releases it, so the next
    delivery connects at once when the backend is back. Injected clients are left alone.
    """
    with _clients.lock:
        if _clients.injected:
            return
        db, _clients.firestore, _clients.storage = _clients.firestore, None, None
    if db is not None:
        try:
            db._firestore_api.transport.close()
        except Exception as exc:  # noqa: BLE001 - best effort: it may never have been opened
            log.debug("closing the Firestore channel: %s", exc)


def _gcs_opts(cfg: Config, budget: _Budget) -> dict:
    """timeout + retry for one Cloud Storage call: bounded by its cap and by the event's budget."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    total = budget.take(cfg.storage_timeout_s)
    attempt = max(0.2, total / 2)
    return {"timeout": (attempt, attempt), "retry": DEFAULT_RETRY.with_timeout(total)}


def _fs_opts(cfg: Config, budget: _Budget) -> dict:
    """timeout + retry for one Firestore call: bounded by its cap and by the event's budget."""
    from google.api_core import exceptions as gexc
    from google.api_core import retry as gretry

    total = budget.take(cfg.firestore_timeout_s)
    retry = gretry.Retry(predicate=gretry.if_exception_type(
        gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.Aborted),
        initial=0.1, maximum=1.0, multiplier=2.0, timeout=total)
    return {"retry": retry, "timeout": max(0.2, total / 2)}


def _transient_errors() -> tuple[type[BaseException], ...]:
    from google.api_core import exceptions as gexc

    errors: list[type[BaseException]] = [
        gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError,
        gexc.TooManyRequests, gexc.Aborted, gexc.RetryError, gexc.BadGateway, gexc.GatewayTimeout,
        gexc.Cancelled, ConnectionError, TimeoutError, DeadlineExceeded]
    try:
        import google.auth.exceptions

        errors.append(google.auth.exceptions.TransportError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import requests

        errors.append(requests.exceptions.RequestException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


@functools.lru_cache(maxsize=1)
def _validator():
    """Draft 2020-12 validator of manifest.schema.json where "integer" means a JSON integer
    (1.0 or 1e30 are not integers here: they would reach Firestore as doubles)."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    base = jsonschema.Draft202012Validator
    base.check_schema(schema)
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


# ----------------------------------------------------------------------------------- logging

class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at emit time (the runtime or a test may replace it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def _ensure_log_handler() -> None:
    """One JSON line per record on stdout (Cloud Logging parses it); set up on first event."""
    if not log.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG if os.environ.get("REGISTER_MODEL_DEBUG") else logging.INFO)


def _show(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _decision(severity: str, decision: str, **fields: Any) -> dict:
    value = fields.pop("value", _NOTHING)
    record = {"severity": severity, "decision": decision,
              "message": f"register_model: {decision}" + (f": {fields['reason']}" if fields.get("reason") else ""),
              **{k: v for k, v in fields.items() if v is not None}}
    if value is not _NOTHING:
        record["value"] = _show(value)
    level = {"NOTICE": logging.INFO, "CRITICAL": logging.CRITICAL}.get(severity) or getattr(logging, severity)
    log.log(level, json.dumps(record, default=str))
    return record


def _refusal(severity: str, decision: str, exc: Rejected | Pending, ids: dict) -> dict:
    extra = {"field": exc.field} if exc.field else {}
    if exc.value is not _NOTHING:
        extra["value"] = exc.value
    return _decision(severity, decision, reason=str(exc), **extra, **ids)


# ----------------------------------------------------------------------------------- envelope

@dataclass(frozen=True)
class ObjectEvent:
    """The validated parts of a finalize event this function uses."""
    bucket: str
    name: str
    generation: int
    size: int
    event_id: str | None = None
    time: _dt.datetime | None = None


def parse_time(value: Any, field: str) -> _dt.datetime:
    """An RFC 3339 timestamp with a zone (Z or ±hh:mm) and a date that exists."""
    if not isinstance(value, str) or not (m := RFC3339_RE.match(value)):
        raise Rejected(f"{field} {_show(value)} is not an RFC 3339 time with a zone "
                       "(e.g. 2026-11-24T12:00:00.123Z)", field, value)
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int(((m.group(7) or ".")[1:7]).ljust(6, "0"))
    zone = m.group(8)
    try:
        if zone in ("Z", "z"):
            tz = _dt.UTC
        else:
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("zone offset out of range")
            sign = 1 if zone[0] == "+" else -1
            tz = _dt.timezone(sign * _dt.timedelta(hours=hours, minutes=minutes))
        return _dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:
        raise Rejected(f"{field} {value!r} is not a time that exists ({exc})", field, value) from None


def _text(value: Any, field: str, max_bytes: int) -> str:
    if not isinstance(value, str) or not value:
        raise Rejected(f"{field} {_show(value)} is not a non-empty string", field, value)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise Rejected(f"{field} {_show(value)} is not valid UTF-8", field, value) from None
    if size > max_bytes or any(c in value for c in "\r\n\x00"):
        raise Rejected(f"{field} {_show(value)} is over {max_bytes} bytes or holds CR/LF/NUL",
                       field, value)
    return value


def _int_field(data: dict, key: str, lo: int) -> int:
    """An int64 the JSON API writes as a decimal string (an int is accepted too)."""
    value = data.get(key)
    if isinstance(value, str) and UINT_RE.match(value):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        number = None
    if number is None or not lo <= number <= INT64_MAX:
        raise Rejected(f"object {key} {_show(value)} is not an integer in [{lo}, 2^63-1]", key, value)
    return number


def parse_object(data: Any, cfg: Config, subject: Any = _NOTHING) -> ObjectEvent:
    """The object resource of a finalize event (``data``); ``subject`` is checked when given."""
    if not isinstance(data, dict):
        raise Rejected(f"event data is {type(data).__name__}, not the object resource (a JSON object)",
                       "data", data)
    bucket = data.get("bucket")
    if not isinstance(bucket, str) or bucket != cfg.model_bucket:
        raise Rejected(f"object bucket {_show(bucket)} is not the model bucket {cfg.model_bucket!r}",
                       "bucket", bucket)
    name = _text(data.get("name"), "name", MAX_OBJECT_NAME_BYTES)
    if subject is not _NOTHING and subject != f"objects/{name}":
        raise Rejected(f"event subject {_show(subject)} does not name the object ({'objects/' + name!r})",
                       "subject", subject)
    return ObjectEvent(bucket=bucket, name=name, generation=_int_field(data, "generation", 1),
                       size=_int_field(data, "size", 0))


def _attributes(cloud_event: Any) -> dict:
    getter = getattr(cloud_event, "get_attributes", None)
    if callable(getter):
        attrs = getter()
        return dict(attrs) if hasattr(attrs, "keys") else {}
    return {k: cloud_event.get(k) for k in ("specversion", "type", "source", "subject", "id", "time")}


def parse_cloud_event(cloud_event: Any, cfg: Config) -> ObjectEvent:
    """Check the CloudEvent against what this function serves; raises Rejected naming the field."""
    attrs = _attributes(cloud_event)
    checks = (("specversion", "1.0", "CloudEvents 1.0"),
              ("type", EVENT_TYPE, "the only event this function handles"),
              ("source", SOURCE_PREFIX + cfg.model_bucket, "the model bucket"))
    for field, want, why in checks:
        if attrs.get(field) != want:
            raise Rejected(f"event {field} {_show(attrs.get(field))} is not {want!r} ({why})",
                           field, attrs.get(field))
    event_id = attrs.get("id")
    if (not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_CHARS
            or not event_id.isprintable()):
        raise Rejected(f"event id {_show(event_id)} is not 1-{MAX_EVENT_ID_CHARS} printable characters",
                       "id", event_id)
    when = parse_time(attrs.get("time"), "time")
    obj = parse_object(getattr(cloud_event, "data", None), cfg, subject=attrs.get("subject"))
    return ObjectEvent(obj.bucket, obj.name, obj.generation, obj.size, event_id, when)


# ----------------------------------------------------------------------------------- paths

def parse_object_name(name: str) -> tuple[str, str] | None:
    """(model, version) for ``models/{model}/{version}/manifest.json``; None if not a manifest.

    Raises Rejected for a manifest at a path that breaks the layout (wrong depth, path tricks).
    """
    if not name.endswith("/" + MANIFEST_NAME) and name != MANIFEST_NAME:
        return None
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "models":
        raise Rejected(f"manifest at {name[:200]!r} is not in its own version folder "
                       "(expected models/{model}/{version}/manifest.json)", "name", name)
    model, version = parts[1], parts[2]
    for what, value in (("model", model), ("version", version)):
        if not NAME_RE.match(value):
            raise Rejected(f"{what} name {value[:80]!r} in {name[:200]!r} is not allowed: use 1-63 of "
                           "a-z 0-9 . _ - (ASCII, starting with a letter or digit, no '..')", "name", name)
    return model, version


def parse_file_name(name: str) -> tuple[str, str, str] | None:
    """(model, version, file) for a file directly in a version folder; None otherwise."""
    parts = name.split("/")
    if (len(parts) == 4 and parts[0] == "models" and NAME_RE.match(parts[1])
            and NAME_RE.match(parts[2]) and FILE_RE.match(parts[3]) and parts[3] != MANIFEST_NAME):
        return parts[1], parts[2], parts[3]
    return None


# ----------------------------------------------------------------------------------- manifest

class _StrictJSON(ValueError):
    def __init__(self, reason: str, value: Any) -> None:
        super().__init__(reason)
        self.value = value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj: dict = {}
    for key, value in pairs:
        if key in obj:
            raise _StrictJSON(f"key {key[:80]!r} appears twice in one object", key)
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise _StrictJSON(f"{name} is not a JSON number", name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _StrictJSON(f"number {text[:40]} is outside the double range", text[:40])
    return value


def _safe_int(text: str) -> int:
    """Integers within +-(2^53 - 1): inside Firestore's int64, and what every client's JSON reader
    (JavaScript, Swift's JSONSerialization, ...) holds exactly (I-JSON, RFC 7493); beyond it the
    local Firestore emulator fails too. A manifest's integers are sizes, indices and shapes."""
    if len(text) > 17 or not -MAX_SAFE_INT <= int(text) <= MAX_SAFE_INT:
        raise _StrictJSON(f"integer {text[:40]} is outside +-(2^53-1), the I-JSON range within "
                          "Firestore's int64", text[:40])
    return int(text)


_JSON_TOKEN_RE = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


def _too_deep(text: str, limit: int) -> bool:
    """Whether JSON text nests deeper than ``limit`` (strings skipped); linear, no recursion."""
    depth, in_string = 0, False
    for m in _JSON_TOKEN_RE.finditer(text):
        token = m.group()
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _check_strings(obj: Any) -> None:
    """Every string and key is valid Unicode text (no lone surrogates from \\ud800 escapes)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        texts: list = []
        if isinstance(item, dict):
            texts = list(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            texts = [item]
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise _StrictJSON(f"string {_show(text, 60)} holds a lone surrogate", text) from None


def parse_manifest(raw: bytes) -> dict:
    """Strict JSON: UTF-8, an object, no duplicate keys, no NaN/Infinity/overflowing numbers,
    integers within +-(2^53-1) (so within int64), at most MAX_JSON_DEPTH levels. Raises Rejected."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"manifest is not JSON (not UTF-8 text: {exc})", "manifest", raw[:40]) from None
    if _too_deep(text, MAX_JSON_DEPTH):
        raise Rejected(f"manifest nests deeper than {MAX_JSON_DEPTH} levels", "manifest", text[:40])
    try:
        manifest = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant,
                              parse_float=_finite_float, parse_int=_safe_int)
        _check_strings(manifest)
    except _StrictJSON as exc:
        raise Rejected(f"manifest is not strict JSON: {exc}", "manifest", exc.value) from None
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise Rejected(f"manifest is not JSON: {str(exc)[:200]}", "manifest", text[:40]) from None
    if not isinstance(manifest, dict):
        raise Rejected(f"manifest is JSON but not an object ({type(manifest).__name__})",
                       "manifest", manifest)
    return manifest


def _check_created_at(value: str) -> None:
    m = CREATED_AT_RE.match(value)
    try:
        _dt.datetime(*(int(g) for g in m.groups()))  # type: ignore[union-attr]
    except (ValueError, AttributeError) as exc:
        raise Rejected(f"created_at {value!r} is not a time that exists ({exc})", "created_at", value) from None


def _check_version_time(value: str, field: str) -> None:
    try:  # YYYYMMDDtHHMMSSffffffz-xxxxxx: the UTC publish time must exist
        _dt.datetime.strptime(value[:21], "%Y%m%dt%H%M%S%f")
    except ValueError as exc:
        raise Rejected(f"{field} {value!r} does not start with a time that exists ({exc})", field, value) from None


def validate_manifest(manifest: dict, model: str, version: str) -> None:
    """Schema-validate and check dates, file list and that it names its own folder. Raises Rejected."""
    errors = sorted(_validator().iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        shown = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}"
                          for e in errors[:5])
        first = errors[0]
        raise Rejected(f"manifest does not match schema version 1 ({len(errors)} error(s)): {shown}",
                       "/".join(map(str, first.absolute_path)) or "manifest", first.instance)
    if manifest["model"] != model or manifest["version"] != version:
        raise Rejected(f"manifest names {manifest['model']}/{manifest['version']} but lies in "
                       f"models/{model}/{version}/", "version", manifest["version"])
    _check_created_at(manifest["created_at"])
    _check_version_time(manifest["version"], "version")
    if manifest["parent_version"] is not None:
        _check_version_time(manifest["parent_version"], "parent_version")
    paths = [f["path"] for f in manifest["files"]]
    if len(set(paths)) != len(paths):
        raise Rejected(f"manifest lists a file twice: {paths}", "files", paths)


def read_manifest(cfg: Config, budget: _Budget, bucket: str, name: str, generation: int) -> bytes:
    """That generation's bytes, at most MAX_MANIFEST_BYTES + 1 of them (raw, not transcoded)."""
    from google.api_core import exceptions as gexc

    blob = _storage().bucket(bucket).blob(name, generation=generation)
    try:
        return blob.download_as_bytes(start=0, end=MAX_MANIFEST_BYTES, raw_download=True,
                                      checksum=None, **_gcs_opts(cfg, budget))
    except gexc.NotFound:
        raise Rejected(f"manifest gs://{bucket}/{name} generation {generation} does not exist "
                       "(deleted or replaced)", "generation", generation) from None
    except gexc.RequestRangeNotSatisfiable:
        return b""


def _load_manifest(cfg: Config, budget: _Budget, obj: ObjectEvent, model: str, version: str) -> tuple[dict, bytes]:
    if obj.size > MAX_MANIFEST_BYTES:
        raise Rejected(f"manifest is {obj.size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit",
                       "size", obj.size)
    if obj.size == 0:
        raise Rejected("manifest is empty (0 bytes): not JSON", "size", obj.size)
    raw = read_manifest(cfg, budget, obj.bucket, obj.name, obj.generation)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise Rejected(f"manifest is over the {MAX_MANIFEST_BYTES}-byte limit", "size", obj.size)
    if len(raw) != obj.size:
        raise Rejected(f"event says the manifest has {obj.size} bytes, generation {obj.generation} "
                       f"has {len(raw)}", "size", obj.size)
    manifest = parse_manifest(raw)
    validate_manifest(manifest, model, version)
    return manifest, raw


# ----------------------------------------------------------------------------------- files

def check_files(cfg: Config, budget: _Budget, bucket: str, model: str, version: str,
                manifest: dict) -> list[dict]:
    """Every listed file is in the version folder with the listed size (as Cloud Storage reports
    it) and sha256 (of the bytes read here). Raises Rejected, or Pending if files are missing."""
    from google.api_core import exceptions as gexc

    gcs_bucket = _storage().bucket(bucket)
    found, missing = [], []
    for i, entry in enumerate(manifest["files"]):
        name = f"models/{model}/{version}/{entry['path']}"
        blob = gcs_bucket.get_blob(name, **_gcs_opts(cfg, budget))
        if blob is None:
            missing.append((i, entry["path"]))
            continue
        if int(blob.size) != entry["size"]:
            raise Rejected(f"listed file {entry['path']!r} is {blob.size} bytes, manifest says {entry['size']}",
                           f"files/{i}/size", entry["size"])
        found.append((i, entry, blob))
    if missing:
        i, path = missing[0]
        raise Pending(f"listed file(s) {[p for _, p in missing]} not in gs://{bucket}/models/{model}/"
                      f"{version}/ yet: registers when they land (within {cfg.pending_window_s:g} s)",
                      f"files/{i}/path", path)
    total = sum(entry["size"] for _, entry, _ in found)
    if total > cfg.max_verify_bytes:
        raise Rejected(f"listed files total {total} bytes, over the {cfg.max_verify_bytes}-byte "
                       "limit this function verifies", "files", total)
    checked = []
    for i, entry, blob in found:
        digest, got = hashlib.sha256(), 0
        try:
            while got < entry["size"]:
                end = min(got + HASH_CHUNK_BYTES, entry["size"]) - 1
                chunk = blob.download_as_bytes(start=got, end=end, raw_download=True, checksum=None,
                                               **_gcs_opts(cfg, budget))
                if not chunk:
                    break
                digest.update(chunk)
                got += len(chunk)
        except gexc.NotFound:
            raise Pending(f"listed file {entry['path']!r} was removed while being verified",
                          f"files/{i}/path", entry["path"]) from None
        if got != entry["size"]:
            raise Rejected(f"listed file {entry['path']!r}: read {got} bytes of {entry['size']}",
                           f"files/{i}/size", entry["size"])
        if digest.hexdigest() != entry["sha256"]:
            raise Rejected(f"listed file {entry['path']!r} has sha256 {digest.hexdigest()[:16]}… (content), "
                           f"manifest says {entry['sha256'][:16]}…", f"files/{i}/sha256", entry["sha256"])
        checked.append({**entry, "uri": f"gs://{bucket}/models/{model}/{version}/{entry['path']}",
                        "generation": int(blob.generation)})
    return checked


# ----------------------------------------------------------------------------------- records

def release_id(channel: str, version: str) -> str:
    """Document id of a release record: sorts by version within a channel."""
    return f"{channel}-{version}"


def _refs(model: str, version: str, channel: str):
    model_ref = _firestore().collection("models").document(model)
    return (model_ref.collection("versions").document(version),
            model_ref.collection("releases").document(release_id(channel, version)))


def _registered(cfg: Config, budget: _Budget, model: str, version: str, channel: str, sha: str) -> bool:
    """True if both records exist for this manifest; Rejected if the version has another one."""
    version_ref, release_ref = _refs(model, version, channel)
    snap = version_ref.get(**_fs_opts(cfg, budget))
    if not snap.exists:
        return False
    existing = (snap.to_dict() or {}).get("manifest_sha256")
    if existing != sha:
        raise Rejected(f"{version_ref.path} already exists with another manifest (sha256 "
                       f"{str(existing)[:16]}… vs {sha[:16]}…): versions are immutable", "manifest_sha256", sha)
    release = release_ref.get(**_fs_opts(cfg, budget))
    return bool(release.exists and (release.to_dict() or {}).get("manifest_sha256") == sha)


def _create_once(cfg: Config, budget: _Budget, doc_ref, data: dict, manifest_sha256: str) -> str:
    """create() the document; 'created', 'duplicate' (same manifest) or raise Rejected (conflict)."""
    from google.api_core import exceptions as gexc

    try:
        doc_ref.create(data, **_fs_opts(cfg, budget))
        return "created"
    except gexc.AlreadyExists:
        existing = doc_ref.get(**_fs_opts(cfg, budget)).to_dict() or {}
        if existing.get("manifest_sha256") == manifest_sha256:
            return "duplicate"
        raise Rejected(f"{doc_ref.path} already exists with another manifest "
                       f"(sha256 {str(existing.get('manifest_sha256'))[:16]}… vs {manifest_sha256[:16]}…): "
                       "versions are immutable", "manifest_sha256", manifest_sha256) from None


def register(cfg: Config, budget: _Budget, bucket: str, model: str, version: str, manifest: dict,
             raw: bytes, files: list[dict], generation: int) -> tuple[str, str]:
    """Write the version record, then the channel's release record. Both create-only."""
    from google.cloud import firestore

    sha = hashlib.sha256(raw).hexdigest()
    prefix = f"gs://{bucket}/models/{model}/{version}/"
    version_ref, release_ref = _refs(model, version, manifest["channel"])
    version_doc = {
        "manifest": manifest, "manifest_sha256": sha, "manifest_generation": str(generation),
        "bucket": bucket, "prefix": prefix, "version": version, "channel": manifest["channel"],
        "registered_at": firestore.SERVER_TIMESTAMP,
    }
    tflite = next(f for f in files if f["format"] == "tflite")
    release_doc = {
        "channel": manifest["channel"], "version": version, "model": model,
        "created_at": manifest["created_at"], "min_app_version": manifest["min_app_version"],
        "bucket": bucket, "prefix": prefix,
        "model_file": {k: tflite[k] for k in ("path", "size", "sha256", "quantization", "uri")},
        "files": [{k: f[k] for k in ("path", "format", "size", "sha256", "quantization", "uri")} for f in files],
        "input": manifest["input"], "outputs": manifest["outputs"], "labels": manifest["labels"],
        "variant": manifest["variant"], "parent_version": manifest["parent_version"],
        "manifest_sha256": sha, "registered_at": firestore.SERVER_TIMESTAMP,
    }
    v = _create_once(cfg, budget, version_ref, version_doc, sha)
    r = _create_once(cfg, budget, release_ref, release_doc, sha)
    return v, r


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
