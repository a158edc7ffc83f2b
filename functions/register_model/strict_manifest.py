"""Strict JSON (no NaN/Infinity, no duplicate keys, bounded depth, safe integers) and the manifest's schema and date checks."""
from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import re
from typing import Any

from .errors import Rejected, _show
from .settings import CREATED_AT_RE, MAX_JSON_DEPTH, MAX_SAFE_INT, SCHEMA_PATH


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
