"""The published-model manifest: its schema (one file, shared with the Cloud Function), version ids,
names, and app-version comparison. See docs/delivery.md.

The schema ships in this package (``manifest.schema.json``, package data); the Cloud Function's
folder holds a byte-identical copy (a test checks it). Version ids are ``YYYYMMDDtHHMMSSffffffz-xxxxxx`` (UTC publish time to the microsecond,
lowercase so they are valid names, plus 6 random hex digits): they sort in publish order as plain
strings, and two publishers in the same microsecond still get distinct ids. A publisher may also give
a version a name (``version_name``, e.g. ``v1.2.0``): a display field, unique per model, that never
orders anything. ``task`` (detector | classifier | segmenter | other) says what the model does; a
manifest without it is a detector.
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import re
import secrets
from pathlib import Path

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^(?!.*\.\.)[a-z0-9][a-z0-9._-]{0,62}$")
CHANNEL_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,31}$")
VERSION_RE = re.compile(r"^[0-9]{8}t[0-9]{6}[0-9]{6}z-[0-9a-f]{6}$")
APP_VERSION_RE = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,6}){0,2}$")
VERSION_NAME_RE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TAG_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_TAGS = 32
TASKS = ("detector", "classifier", "segmenter", "other")
DEFAULT_TASK = "detector"   # a manifest without "task" (written before tasks existed) is a detector
SCHEMA_FILE = "manifest.schema.json"


def schema_path() -> Path:
    """manifest.schema.json, shipped inside this package (package data). The Cloud Function's
    folder keeps a byte-identical copy (functions/register_model/), so it stays self-contained;
    tests/contracts/test_manifest_schema_copy.py fails when the two differ."""
    path = Path(__file__).with_name(SCHEMA_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"manifest schema {path} is missing from the installed package "
                                "(package data not installed?)")
    return path


@functools.lru_cache(maxsize=1)
def load_schema() -> dict:
    """The manifest JSON Schema (draft 2020-12) as a dict."""
    return json.loads(schema_path().read_text())


def validate(manifest: dict, source: str = "manifest") -> None:
    """Raise ValueError listing every schema violation (path: message), naming ``source``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        shown = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}"
                          for e in errors[:8])
        raise ValueError(f"{source} does not match the manifest schema ({len(errors)} error(s)): {shown}")


def new_version(now: _dt.datetime | None = None) -> str:
    """A fresh version id that sorts after every id made earlier (UTC microseconds + random)."""
    now = (now or _dt.datetime.now(_dt.timezone.utc)).astimezone(_dt.timezone.utc)
    return now.strftime("%Y%m%dt%H%M%S%fz") + "-" + secrets.token_hex(3)


def version_time(version: str) -> _dt.datetime:
    """The UTC publish time encoded in a version id."""
    check_version(version, "version")
    return _dt.datetime.strptime(version[:21], "%Y%m%dt%H%M%S%f").replace(tzinfo=_dt.timezone.utc)


def check_name(value: str, what: str) -> str:
    """Return value if it is a safe model name; else ValueError naming it and ``what``."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ValueError(f"{what} {value!r} is not allowed: use 1-63 of a-z 0-9 . _ - (ASCII, "
                         "starting with a letter or digit, no '..')")
    return value


def check_channel(value: str, what: str = "channel") -> str:
    if not isinstance(value, str) or not CHANNEL_RE.match(value):
        raise ValueError(f"{what} {value!r} is not allowed: use 1-32 of a-z 0-9 _ (e.g. stable, beta)")
    return value


def check_version(value: str, what: str = "version") -> str:
    if not isinstance(value, str) or not VERSION_RE.match(value):
        raise ValueError(f"{what} {value!r} is not a version id (expected e.g. "
                         f"{new_version(_dt.datetime(2026, 1, 2, 3, 4, 5, 6, _dt.timezone.utc))})")
    return value


def task_of(manifest: dict) -> str:
    """The manifest's task (``detector`` when it has none)."""
    return manifest.get("task") or DEFAULT_TASK


def check_task(value: str, what: str = "task") -> str:
    if value not in TASKS:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(TASKS)}")
    return value


def check_version_name(value: str, what: str = "version name") -> str:
    """A publisher-chosen version name (shown beside the time-ordered version id)."""
    if not isinstance(value, str) or not VERSION_NAME_RE.match(value):
        raise ValueError(f"{what} {value!r} is not allowed: use 1-64 of A-Z a-z 0-9 . _ - "
                         "(starting with a letter or digit, no '..'), e.g. v1.2.0")
    return value


def check_tags(tags, what: str = "tags") -> list[str]:
    """Tags as a list of distinct strings of A-Z a-z 0-9 _ . : - (1-64 each, at most 32)."""
    tags = list(tags or [])
    for tag in tags:
        if not isinstance(tag, str) or not TAG_RE.match(tag):
            raise ValueError(f"{what}: tag {tag!r} is not allowed: use 1-64 of A-Z a-z 0-9 _ . : -")
    if len(set(tags)) != len(tags):
        raise ValueError(f"{what}: {tags} lists a tag twice")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"{what}: {len(tags)} tags, at most {MAX_TAGS}")
    return tags


def app_version_tuple(value: str, what: str = "app version") -> tuple[int, int, int]:
    """'1.2' -> (1, 2, 0). ValueError naming the value if it is not 1-3 dotted integers."""
    if not isinstance(value, str) or not APP_VERSION_RE.match(value):
        raise ValueError(f"{what} {value!r} is not dotted integers like 1.4.0")
    parts = [int(p) for p in value.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def release_id(channel: str, version: str) -> str:
    """Firestore id of the release record of ``version`` on ``channel`` (sorts by version)."""
    return f"{channel}-{version}"
