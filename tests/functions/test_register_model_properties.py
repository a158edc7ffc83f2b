"""Property-based tests (hypothesis) of the register_model function: generated manifests and
CloudEvents, valid and invalid, against the real function (functions-framework in its own process,
real HTTP) on private fake-gcs-server and Firestore emulator processes.

- every invalid manifest, envelope or request body gets an answer < 500, writes nothing, and logs
  exactly one decision line (``rejected``, ``pending`` or ``dropped``) naming the field;
- every valid manifest registers exactly once (one ``registered`` line, its two records, the
  manifest stored as uploaded), and its redelivery is a ``duplicate`` that writes nothing.

The budget is fixed for CI: derandomized, no example database, MAX_EXAMPLES per property
(env HYPOTHESIS_MAX_EXAMPLES overrides). benchmarks/hostile_inputs.py drives the same strategies.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import string

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.functions import test_hostile_inputs as h

pytestmark = pytest.mark.stack

MAX_EXAMPLES = int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "60"))
PER_CLASS = max(3, MAX_EXAMPLES // 5)   # properties split by class of input: each class gets these
# No shrinking by default (a shrink re-runs the function hundreds of times: minutes); a failure
# reports the example as generated. HYPOTHESIS_SHRINK=1 shrinks it when debugging.
PHASES = [Phase.explicit, Phase.generate] + ([Phase.shrink] if os.environ.get("HYPOTHESIS_SHRINK") else [])
SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                    print_blob=False, phases=PHASES,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example,
                                           HealthCheck.filter_too_much])
BAD_VERSION = "20261124t120000000000z-0bad00"      # folder for invalid manifests (files uploaded once)
PENDING_VERSION = "20261124t120000000000z-0e0e0e"  # a valid manifest no event has delivered yet
BASE = h.base_manifest(BAD_VERSION)
INT64_MAX = 2 ** 63 - 1
SAFE = 2 ** 53 - 1   # manifest integers: the function's I-JSON range (Firestore's int64 holds it)

# ------------------------------------------------------------------------------ JSON values

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-SAFE, SAFE),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=8)
KINDS = {
    "null": st.none(), "bool": st.booleans(), "int": st.integers(-SAFE, SAFE),
    "float": st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    "string": st.text(max_size=20), "array": st.lists(json_scalars, max_size=3),
    "object": st.dictionaries(st.text(max_size=8), json_scalars, max_size=3),
}


def _get(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def _set(doc, path, value):
    _get(doc, path[:-1])[path[-1]] = value


def _copy() -> dict:
    return json.loads(json.dumps(BASE))


def _dump(manifest: dict) -> bytes:
    return json.dumps(manifest, indent=1).encode()


# ------------------------------------------------------------------------------ bad manifests

FLOAT_FIELDS = [("metrics", "map"), ("metrics", "map50"), ("metrics", "delta_map_vs_float"),
                ("metrics", "latency_ms"), ("input", "scale")]
INT_FIELDS = [("metrics", "size_bytes"), ("input", "zero_point"), ("files", 0, "size"),
              ("outputs", "boxes", "index"), ("input", "shape", 0), ("schema_version",)]
NOT_NUMBERS = ["NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E999"]
BEYOND_INT64 = [str(2 ** 63), str(2 ** 70), str(-(2 ** 63) - 1), str(10 ** 30), "1" * 25,
                str(2 ** 53), str(-(2 ** 53)), str(2 ** 63 - 1)]
NOT_INTEGERS = ["1e30", "1.0", "2.5", "-0.5", "1E2"]
# the allowed JSON types of each leaf (an int is also a number)
LEAF_TYPES = {
    ("schema_version",): {"int"}, ("model",): {"string"}, ("version",): {"string"},
    ("created_at",): {"string"}, ("channel",): {"string"}, ("variant",): {"string"},
    ("files",): {"array"}, ("files", 0): {"object"}, ("files", 0, "path"): {"string"},
    ("files", 0, "size"): {"int"}, ("files", 0, "sha256"): {"string"},
    ("files", 0, "quantization"): {"string", "null"}, ("input",): {"object"},
    ("input", "name"): {"string"}, ("input", "shape"): {"array"}, ("input", "dtype"): {"string"},
    ("input", "scale"): {"int", "float", "null"}, ("input", "zero_point"): {"int", "null"},
    ("outputs", "count"): {"object"}, ("outputs", "count", "index"): {"int"},
    ("labels",): {"array"}, ("labels", 0): {"string"}, ("metrics",): {"object"},
    ("metrics", "map"): {"int", "float", "null"}, ("metrics", "size_bytes"): {"int"},
    ("min_app_version",): {"string"}, ("pipeline_run_id",): {"string"},
    ("dataset_fingerprint",): {"string", "null"}, ("parent_version",): {"string", "null"},
}
OBJECTS = [(), ("input",), ("metrics",), ("files", 0), ("outputs",), ("outputs", "scores")]
REQUIRED = [("schema_version",), ("model",), ("version",), ("created_at",), ("channel",), ("files",),
            ("input",), ("labels",), ("metrics",), ("parent_version",), ("files", 0, "sha256"),
            ("files", 0, "size"), ("input", "dtype"), ("outputs", "boxes"), ("outputs", "count", "name"),
            ("metrics", "size_bytes"), ("dataset_fingerprint",), ("min_app_version",)]
STRING_FIELDS = [("pipeline_run_id",), ("labels", 0), ("input", "name"), ("input", "normalization"),
                 ("outputs", "scores", "name")]
TOP_KEYS = sorted(BASE)


def _literal(draw) -> tuple[str, bytes]:
    """A number literal Firestore cannot hold exactly, where a number belongs."""
    if draw(st.booleans()):
        path, literal = draw(st.sampled_from(FLOAT_FIELDS)), draw(st.sampled_from(NOT_NUMBERS + BEYOND_INT64))
    else:
        path = draw(st.sampled_from(INT_FIELDS))
        literal = draw(st.sampled_from(NOT_NUMBERS + BEYOND_INT64 + NOT_INTEGERS))
    m = _copy()
    _set(m, path, "__LITERAL__")
    return f"number {literal} at {path}", _dump(m).replace(b'"__LITERAL__"', literal.encode())


def _duplicate_key(draw) -> tuple[str, bytes]:
    key = draw(st.sampled_from(TOP_KEYS))
    value = BASE[key] if draw(st.booleans()) else draw(json_values)
    body = _dump(BASE).replace(f'\n "{key}": '.encode(),
                               f'\n "{key}": {json.dumps(value)},\n "{key}": '.encode(), 1)
    return f"duplicate key {key}", body


def _deep(draw) -> tuple[str, bytes]:
    depth = draw(st.integers(17, 5000))   # the function allows 16 levels; a manifest uses 3
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    nested = opener * depth + b"1" + closer * depth
    key = draw(st.sampled_from(["labels", "extra", "metrics"]))
    body = _dump({**BASE, key: "__DEEP__"}).replace(b'"__DEEP__"', nested)
    return f"nested {depth} deep", body


def _surrogate(draw) -> tuple[str, bytes]:
    m = _copy()
    path = draw(st.sampled_from(STRING_FIELDS))
    _set(m, path, draw(st.sampled_from(["\ud800", "\udfff", "a\udc00b", "\ud83d"])))
    return f"lone surrogate at {path}", json.dumps(m).encode()   # ensure_ascii: \\udXXX escapes


def _broken_text(draw) -> tuple[str, bytes]:
    body = _dump(BASE)
    how = draw(st.sampled_from(["truncated", "bad-utf8", "bom", "trailing", "not-object", "binary",
                                "single-quotes", "comment"]))
    if how == "truncated":
        body = body[:draw(st.integers(0, len(body) - 1))]
    elif how == "bad-utf8":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])) + body[at:]
    elif how == "bom":
        body = b"\xef\xbb\xbf" + body
    elif how == "trailing":
        body = body + draw(st.sampled_from([b"x", b"}", b",", b"{}", b"\x00"]))
    elif how == "not-object":
        body = json.dumps(draw(st.one_of(json_scalars, st.lists(json_values, max_size=3)))).encode()
    elif how == "binary":
        body = draw(st.binary(min_size=1, max_size=512))
    elif how == "single-quotes":
        body = body.replace(b'"', b"'")
    else:
        body = b"// manifest\n" + body
    return f"broken text ({how})", body


def _schema_violation(draw) -> tuple[str, bytes]:
    m = _copy()
    how = draw(st.sampled_from(["missing", "unknown", "wrong-type", "out-of-range"]))
    if how == "missing":
        path = draw(st.sampled_from(REQUIRED))
        del _get(m, path[:-1])[path[-1]]
    elif how == "unknown":
        path = draw(st.sampled_from(OBJECTS))
        target = _get(m, path)
        key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in target and k != "position"))
        target[key] = draw(json_values)
    elif how == "wrong-type":
        path = draw(st.sampled_from(sorted(LEAF_TYPES)))
        kind = draw(st.sampled_from(sorted(set(KINDS) - LEAF_TYPES[path])))
        _set(m, path, draw(KINDS[kind]))
    else:
        path, value = draw(st.sampled_from([
            (("schema_version",), st.integers(2, 100)),
            (("channel",), st.text(min_size=1, max_size=40).filter(
                lambda c: not (c[0] in string.ascii_lowercase + string.digits and len(c) <= 32
                               and set(c) <= set(string.ascii_lowercase + string.digits + "_")))),
            (("input", "dtype"), st.text(max_size=10).filter(
                lambda d: d not in ("float32", "float16", "uint8", "int8", "int16"))),
            (("input", "shape", 0), st.one_of(st.integers(65537, SAFE), st.integers(-SAFE, -2))),
            (("files", 0, "size"), st.one_of(st.integers(2 ** 31 + 1, SAFE), st.integers(-SAFE, -1))),
            (("files", 0, "format"), st.sampled_from(["model", "TFLITE", "", "zip"])),
            (("files", 0, "sha256"), st.from_regex(r"\A[0-9A-F]{64}\Z")),
            (("files", 1, "path"), st.sampled_from(["../x", "manifest.json", "a/b", ".hidden", "a..b", ""])),
            (("labels",), st.just([])),
            (("labels", 0), st.just("")),
            (("min_app_version",), st.sampled_from(["1.2.3.4", "v1", "", "1..2", "1.0.0-beta"])),
            (("dataset_fingerprint",), st.sampled_from(["md5:00", "sha256:" + "g" * 64, ""])),
            (("model",), st.sampled_from(["other", "detector2"])),
            (("version",), st.sampled_from([h.fresh_version(), "20261124t120000000000z-0bad01"])),
            (("outputs", "boxes", "position"), st.integers(64, 1000)),
            (("files",), st.just([])),
        ]))
        _set(m, path, draw(value))
    return f"schema {how} at {path}", _dump(m)


def _semantic(draw) -> tuple[str, bytes]:
    m = _copy()
    how = draw(st.sampled_from(["created_at", "parent_version", "duplicate-path", "two-tflite"]))
    if how in ("created_at", "parent_version"):
        year = draw(st.integers(2000, 2099))
        month, day, hour, minute, second = draw(st.one_of(
            st.tuples(st.integers(1, 12), st.integers(29, 31), st.just(0), st.just(0), st.just(0)).filter(
                lambda t: t[1] > [31, 29 if year % 4 == 0 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][t[0] - 1]),
            st.tuples(st.integers(13, 99), st.integers(1, 28), st.just(0), st.just(0), st.just(0)),
            st.tuples(st.just(1), st.just(0), st.just(0), st.just(0), st.just(0)),
            st.tuples(st.just(1), st.just(1), st.integers(24, 99), st.integers(0, 59), st.integers(0, 59)),
            st.tuples(st.just(1), st.just(1), st.just(0), st.integers(60, 99), st.integers(0, 59)),
            st.tuples(st.just(1), st.just(1), st.just(0), st.just(0), st.integers(60, 99))))
        if how == "created_at":
            m["created_at"] = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"
        else:
            m["parent_version"] = f"{year:04d}{month:02d}{day:02d}t{hour:02d}{minute:02d}{second:02d}000000z-abcdef"
    elif how == "duplicate-path":
        m["files"].append(dict(m["files"][1]))
    else:
        m["files"].append(dict(m["files"][0], path="second.tflite"))
    return f"semantic {how}", _dump(m)


def _file_mismatch(draw) -> tuple[str, bytes]:
    m = _copy()
    i = draw(st.integers(0, len(m["files"]) - 1))
    how = draw(st.sampled_from(["sha256", "size", "missing"]))
    if how == "sha256":
        m["files"][i]["sha256"] = draw(st.from_regex(r"\A[0-9a-f]{64}\Z").filter(
            lambda s: s != m["files"][i]["sha256"]))
    elif how == "size":
        m["files"][i]["size"] = draw(st.integers(0, 2 ** 31).filter(lambda n: n != m["files"][i]["size"]))
    else:   # pending: acknowledged, written when (if ever) the file lands
        m["files"].append({"path": draw(st.from_regex(r"\Aextra[a-z0-9]{1,8}\.bin\Z")), "format": "report",
                           "size": 3, "sha256": "0" * 64, "quantization": None})
    return f"file {how} ({i})", _dump(m)


MANIFEST_CLASSES = {"numbers": _literal, "duplicate-key": _duplicate_key, "nesting": _deep,
                    "surrogate": _surrogate, "text": _broken_text, "schema": _schema_violation,
                    "semantic": _semantic, "files": _file_mismatch}


@st.composite
def bad_manifests(draw, kind: str | None = None) -> tuple[str, bytes]:
    """(label, manifest bytes) for the BAD_VERSION folder: never registrable."""
    make = MANIFEST_CLASSES[kind] if kind else draw(st.sampled_from(list(MANIFEST_CLASSES.values())))
    return make(draw)


# ------------------------------------------------------------------------------ bad envelopes

def _invalid(valid_check):
    return st.one_of(json_values, st.text(max_size=40)).filter(lambda v: not valid_check(v))


def _old_or_zoneless_time():
    stamp = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31))
    return st.one_of(
        stamp.map(lambda t: t.isoformat()),                                  # no zone
        stamp.map(lambda t: t.strftime("%Y-%m-%d %H:%M:%SZ")),               # no T
        st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2026, 1, 1)).map(
            lambda t: t.isoformat() + "Z"),                                   # older than 24 h
        st.sampled_from(["2026-02-30T00:00:00Z", "2026-11-24T24:00:00Z", "2026-11-24T12:00:00+24:00",
                         "2026-11-24T12:00:60Z", "now", "", "1732449600"]),
        st.integers(), st.lists(st.integers(), max_size=2))   # (no time at all is valid: the SDK sets now)


ENVELOPE_FIELDS = ["type", "source", "subject", "id", "time", "specversion", "data", "bucket", "name",
                   "generation", "size"]


@st.composite
def bad_envelopes(draw, obj: dict, what: str | None = None) -> tuple[str, dict, object, str]:
    """(label, attributes, data, mode) for the finalize event of ``obj`` with one field broken."""
    attrs, data = h.event_attrs(obj), dict(obj)
    what = what or draw(st.sampled_from(ENVELOPE_FIELDS))
    mode = "structured"
    if what == "type":
        attrs["type"] = draw(st.one_of(
            st.sampled_from([h.EVENT_TYPE.replace("finalized", x) for x in
                             ("deleted", "archived", "metadataUpdated", "Finalized", "")]),
            _invalid(lambda v: v == h.EVENT_TYPE)))
    elif what == "source":
        attrs["source"] = draw(st.one_of(
            st.from_regex(r"\A[a-z0-9][a-z0-9-]{2,20}\Z").map(
                lambda b: f"//storage.googleapis.com/projects/_/buckets/{b}"),
            _invalid(lambda v: v == attrs["source"])))
    elif what == "subject":
        attrs["subject"] = draw(_invalid(lambda v: v == attrs["subject"]))
    elif what == "id":
        attrs["id"] = draw(st.one_of(st.just(""), st.text(min_size=257, max_size=300),
                                     st.sampled_from(["a\nb", "\x00", "tab\there"]), st.integers(),
                                     st.lists(st.integers(), max_size=2), st.booleans()))
    elif what == "time":
        attrs["time"] = draw(_old_or_zoneless_time())
    elif what == "specversion":
        attrs["specversion"] = draw(st.sampled_from(["0.3", "", "2.0", "1", 1.0, None]))
    elif what == "data":
        data = draw(st.one_of(st.none(), st.text(max_size=30), st.lists(json_values, max_size=3),
                              st.integers(), st.booleans(), st.just({}),
                              st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
    elif what in ("generation", "size"):
        current = int(obj[what])
        data[what] = draw(st.one_of(
            st.integers(-(2 ** 70), 2 ** 70).filter(lambda n: n != current),
            st.integers(-(2 ** 70), 2 ** 70).filter(lambda n: n != current).map(str),
            st.sampled_from(["", "abc", "1e5", "12.0", " 1", "0x10", "-0", "+1", str(current) + ".0"]),
            st.floats(allow_nan=False), st.booleans(), st.none(), st.lists(st.integers(), max_size=2)))
    else:   # bucket, name
        data[what] = draw(st.one_of(
            _invalid(lambda v: v == obj[what]),
            st.sampled_from(["", "a\nb", "x" * 1025, "models/\ud800/x"] if what == "name"
                            else ["", "other-bucket", h.BUCKET.upper()])))
        if what == "name" and draw(st.booleans()):
            del data["name"]
    return f"{what}={str(attrs.get(what, data if what == 'data' else data.get(what)))[:40]!r}", attrs, data, mode


# ------------------------------------------------------------------------------ not CloudEvents

HEADER_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "./:-_", min_size=1, max_size=30)


@st.composite
def not_cloudevents(draw) -> tuple[str, dict, bytes]:
    headers = {}
    ctype = draw(st.sampled_from([None, "application/json", "application/cloudevents+json",
                                  "application/cloudevents-batch+json", "text/plain",
                                  "application/octet-stream"]))
    if ctype:
        headers["content-type"] = ctype
    for key in draw(st.lists(st.sampled_from(["ce-specversion", "ce-id", "ce-source", "ce-type",
                                              "ce-subject", "ce-time"]), unique=True, max_size=6)):
        headers[key] = draw(st.one_of(HEADER_TEXT, st.just("1.0")))
    body = draw(st.one_of(
        st.binary(max_size=600),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.integers(10, 20000).map(lambda d: b"[" * d + b"]" * d),
        st.dictionaries(st.sampled_from(["context", "data", "eventId", "eventType", "resource",
                                         "specversion", "id", "source", "type", "message"]),
                        json_values, max_size=5).map(lambda v: json.dumps(v).encode())))
    return f"{headers} {body[:30]!r}", headers, body


# ------------------------------------------------------------------------------ valid manifests

def _text(max_size=24):
    return st.text(max_size=max_size)


@st.composite
def valid_releases(draw) -> tuple[dict, dict[str, bytes], str]:
    """(manifest, files, mode): a manifest every check accepts, with its files' bytes."""
    when = draw(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)))
    version = h.fresh_version(when)
    paths = draw(st.lists(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,12}\.[a-z]{1,5}\Z").filter(
        lambda p: p != "manifest.json"), min_size=1, max_size=5, unique=True))
    formats = ["tflite"] + [draw(st.sampled_from(["coreml", "labels", "report", "decision"])) for _ in paths[1:]]
    files = {p: draw(st.binary(min_size=0 if f != "tflite" else 1, max_size=3000)) for p, f in zip(paths, formats)}
    manifest = {
        "schema_version": 1, "model": h.MODEL, "version": version,
        "created_at": when.strftime("%Y-%m-%dT%H:%M:%S") + draw(st.sampled_from(
            ["", "." + f"{when.microsecond:06d}", "." + f"{when.microsecond:06d}"[:3]])) + "Z",
        "channel": draw(st.from_regex(r"\A[a-z0-9][a-z0-9_]{0,31}\Z")),
        "variant": draw(st.from_regex(r"\A[a-z0-9][a-z0-9_]{0,20}\Z")),
        "files": [h.file_entry(p, f, files[p], draw(st.one_of(st.none(), _text(64)))) for p, f in zip(paths, formats)],
        "input": {"name": draw(_text()), "shape": draw(st.lists(st.integers(-1, 65536), min_size=1, max_size=8)),
                  "dtype": draw(st.sampled_from(["float32", "float16", "uint8", "int8", "int16"])),
                  "scale": draw(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))),
                  "zero_point": draw(st.one_of(st.none(), st.integers(-SAFE, SAFE))),
                  "normalization": draw(_text())},
        "outputs": {k: {"index": draw(st.integers(0, 1_000_000)), "name": draw(_text()),
                        **({"position": draw(st.integers(0, 63))} if draw(st.booleans()) else {})}
                    for k in ("boxes", "classes", "scores", "count")},
        "labels": draw(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=12)),
        "metrics": {k: draw(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)))
                    for k in ("map", "map50", "delta_map_vs_float", "latency_ms")}
                   | {"size_bytes": draw(st.integers(0, SAFE))},
        "min_app_version": draw(st.from_regex(r"\A[0-9]{1,6}(\.[0-9]{1,6}){0,2}\Z")),
        "pipeline_run_id": draw(_text()),
        "dataset_fingerprint": draw(st.one_of(st.none(), st.from_regex(r"\Asha256:[0-9a-f]{64}\Z"))),
        "parent_version": draw(st.one_of(st.none(), st.datetimes(
            min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)).map(
            lambda t: t.strftime("%Y%m%dt%H%M%S%f") + "z-abcdef"))),
    }
    return manifest, files, draw(st.sampled_from(["binary", "structured"]))


# ------------------------------------------------------------------------------ the checks

def request_for(attrs: dict, data, mode: str) -> tuple[dict, bytes]:
    return h.structured_request(attrs, data) if mode == "structured" else h.binary_request(attrs, data)


def check_refused(reply: h.Reply, servers, label: str) -> None:
    """An invalid input: < 500, no write, exactly one refusal line naming a field."""
    assert reply.status < 500, (label, reply)
    assert h.docs(servers) == {}, (label, reply)
    assert [r["decision"] for r in reply.decisions] in (["rejected"], ["pending"], ["dropped"]), (label, reply)
    assert reply.decisions[0].get("field"), (label, reply)


def deliver_manifest(fn, bucket, version: str, body: bytes) -> h.Reply:
    obj = h.upload(bucket, f"models/{h.MODEL}/{version}/manifest.json", body)
    return fn.deliver(obj)


def register_valid(fn, bucket, servers, db, manifest: dict, files: dict, mode: str, known: dict) -> None:
    """A valid release: registered once with both records; the redelivery writes nothing."""
    version = manifest["version"]
    h.upload_folder(bucket, version, files)
    obj = h.upload(bucket, f"models/{h.MODEL}/{version}/manifest.json", json.dumps(manifest).encode())
    event = request_for(h.event_attrs(obj), obj, mode)
    reply = fn.post(*event)
    assert reply.status == 200 and [r["decision"] for r in reply.decisions] == ["registered"], reply
    expected = {f"models/{h.MODEL}/versions/{version}", f"models/{h.MODEL}/releases/{manifest['channel']}-{version}"}
    after = h.docs(servers)
    assert set(after) == set(known) | expected, reply
    stored = db.collection("models").document(h.MODEL).collection("versions").document(version).get()
    assert stored.to_dict()["manifest"] == manifest
    again = fn.post(*event)
    assert again.status == 200 and [r["decision"] for r in again.decisions] == ["duplicate"], again
    assert h.docs(servers) == after
    known.update(after)


# ------------------------------------------------------------------------------ properties

@pytest.fixture()
def bad_folder(hostile):
    fn, bucket = hostile
    h.upload_folder(bucket, BAD_VERSION)
    return fn, bucket


@pytest.fixture()
def pending_manifest(hostile):
    fn, bucket = hostile
    h.upload_folder(bucket, PENDING_VERSION)
    obj = h.upload(bucket, f"models/{h.MODEL}/{PENDING_VERSION}/manifest.json",
                   h.manifest_bytes(h.base_manifest(PENDING_VERSION)))
    return fn, obj


@pytest.mark.parametrize("kind", sorted(MANIFEST_CLASSES))
@settings(SETTINGS, max_examples=PER_CLASS)
@given(data=st.data())
def test_invalid_manifests_get_below_500_and_write_nothing(bad_folder, servers, kind, data):
    fn, bucket = bad_folder
    label, body = data.draw(bad_manifests(kind), label="manifest")
    check_refused(deliver_manifest(fn, bucket, BAD_VERSION, body), servers, label)


@pytest.mark.parametrize("what", ENVELOPE_FIELDS)
@settings(SETTINGS, max_examples=max(3, PER_CLASS * 2 // 3))
@given(data=st.data())
def test_invalid_envelopes_get_below_500_and_write_nothing(pending_manifest, servers, what, data):
    fn, obj = pending_manifest
    label, attrs, payload, mode = data.draw(bad_envelopes(obj, what), label="event")
    check_refused(fn.post(*request_for(attrs, payload, mode)), servers, label)


@SETTINGS
@given(case=not_cloudevents())
def test_requests_that_are_not_cloudevents_get_below_500_and_write_nothing(hostile, servers, case):
    fn, _ = hostile
    label, headers, body = case
    reply = fn.post(headers, body)
    assert reply.status < 500, (label, reply)
    assert h.docs(servers) == {}, label
    assert [r["decision"] for r in reply.decisions] == ["rejected"], (label, reply)


class Registry:
    """The function, bucket and Firestore client, and the documents written so far."""

    def __init__(self, fn, bucket, db) -> None:
        self.fn, self.bucket, self.db, self.known = fn, bucket, db, {}

    def __repr__(self) -> str:
        return f"Registry({len(self.known)} documents)"


@pytest.fixture()
def registry(hostile, stores):
    fn, bucket = hostile
    db, _, _ = stores
    return Registry(fn, bucket, db)


@SETTINGS
@given(case=valid_releases())
def test_valid_manifests_register_exactly_once(registry, servers, case):
    manifest, files, mode = case
    register_valid(registry.fn, registry.bucket, servers, registry.db, manifest, files, mode, registry.known)


# ------------------------------------------------------------------------------ the shared stack

class StackRun:
    """The session's local stack (relay -> function -> Firestore emulator), for one test."""

    def __init__(self, config) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        self.config = config
        gcs = storage.Client(project=config.project, credentials=AnonymousCredentials())  # env: the relay
        self.bucket = gcs.bucket(h.BUCKET)
        self.control = json.loads((config.state_dir / "firestore.control.json").read_text())["control_port"]
        self.log = config.log_path("function")
        self.offset = self.log.stat().st_size
        self.valid: list[str] = []

    def __repr__(self) -> str:
        return f"StackRun({len(self.valid)} valid)"

    def docs(self) -> dict:
        return h.support.firestore_documents(self.control)


@pytest.fixture()
def stack_run(clean_stack):
    return StackRun(clean_stack)


@settings(SETTINGS, max_examples=max(5, MAX_EXAMPLES // 2))
@given(case=st.one_of(bad_manifests().map(lambda c: ("bad", c)), valid_releases().map(lambda c: ("valid", c))))
def test_on_the_local_stack_uploads_are_never_answered_5xx_and_valid_ones_register_once(stack_run, case):
    """Through the relay (the local Eventarc): every finalize event the uploads cause is delivered to
    the function; none may be answered 5xx, bad manifests write nothing, valid ones register once."""
    from edgeship.localcloud import stack as local_stack

    run, (kind, payload) = stack_run, case
    before = local_stack.relay_stats(run.config)
    docs_before = run.docs()
    if kind == "bad":
        label, body = payload
        h.upload_folder(run.bucket, BAD_VERSION)
        h.upload(run.bucket, f"models/{h.MODEL}/{BAD_VERSION}/manifest.json", body)
    else:
        manifest, files, _ = payload
        label = manifest["version"]
        h.upload_folder(run.bucket, manifest["version"], files)
        h.upload(run.bucket, f"models/{h.MODEL}/{manifest['version']}/manifest.json",
                 json.dumps(manifest).encode())
        run.valid.append(manifest["version"])
    assert local_stack.drain(run.config, timeout=60), label
    after = local_stack.relay_stats(run.config)
    assert after["failures"] == before["failures"] and after.get("dead", 0) == 0, (label, after)
    docs = run.docs()
    if kind == "bad":
        assert docs == docs_before, label
    else:
        version = manifest["version"]
        assert set(docs) - set(docs_before) == {
            f"models/{h.MODEL}/versions/{version}", f"models/{h.MODEL}/releases/{manifest['channel']}-{version}"}
    with open(run.log, "rb") as fh:
        fh.seek(run.offset)
        lines = [json.loads(x) for x in fh.read().decode("utf-8", "replace").splitlines()
                 if x.startswith("{") and '"decision"' in x]
    registered = [r["version"] for r in lines if r["decision"] == "registered"]
    assert sorted(registered) == sorted(run.valid), label   # each valid version once, nothing else
