"""Strict parsing of the CloudEvent envelope and the Cloud Storage object it carries (type, source, subject, bucket, name, generation, size, times)."""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from .errors import _NOTHING, Rejected, _show
from .settings import (
    EVENT_TYPE,
    FILE_RE,
    INT64_MAX,
    MANIFEST_NAME,
    MAX_EVENT_ID_CHARS,
    MAX_OBJECT_NAME_BYTES,
    NAME_RE,
    RFC3339_RE,
    SOURCE_PREFIX,
    UINT_RE,
    Config,
)


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
