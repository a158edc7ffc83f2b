"""The iOS package's Firestore contract (clients/ios/Sources/EdgeshipModelCore/FirestoreContract.swift)
against documents the real code writes: a release record written by the register_model function
for a real publish, and a channel control document written by `edgeship channel pause`.

There is no Swift toolchain here (STACK.md), so the Swift file is parsed with regular expressions:
one `static let NAME = FieldSpec("path", .kind[, .presence])` per line. Both directions are checked:
every field the Swift code reads exists in the document with a type the Swift decoder accepts (as
the Firebase iOS SDK hands it over: the Firestore wire types), and every field the function writes
is either read by the Swift code or listed in its `notRead`. The release record is also written as a
JSON fixture (tmp dir) for inspection and for the Swift package's own tests.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support import delivery as support

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "clients" / "ios" / "Sources" / "EdgeshipModelCore" / "FirestoreContract.swift"
SWIFT_SOURCES = ROOT / "clients" / "ios" / "Sources"

SPEC_RE = re.compile(
    r'static\s+let\s+(\w+)\s*=\s*FieldSpec\(\s*"([^"]+)"\s*,\s*\.(\w+)\s*(?:,\s*\.(\w+)\s*)?\)')
KINDS = {"string", "int", "int64", "double", "bool", "timestamp", "stringArray", "intArray", "map", "mapArray"}
PRESENCES = {"required", "nullable", "optional"}



def registry_function(name: str):
    """The real publish() (components.publish.core) or channel_action() (edgeship.delivery.registry)."""
    from components.publish import core as publish_core
    from edgeship.delivery import registry

    return {"publish": publish_core.publish, "channel_action": registry.channel_action}[name]


# ------------------------------------------------------------------------------- the Swift side

def _enum_body(text: str, name: str) -> str:
    """The body of `public enum NAME { ... }` (braces balanced)."""
    start = text.index(f"public enum {name} {{") + len(f"public enum {name} {{")
    depth, i = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start:i - 1]


def swift_contract(name: str) -> dict:
    text = re.sub(r"//[^\n]*", "", CONTRACT.read_text())
    body = _enum_body(text, name)
    specs = {}
    for ident, path, kind, presence in SPEC_RE.findall(body):
        assert kind in KINDS, (ident, kind)
        assert presence in ("",) + tuple(PRESENCES), (ident, presence)
        specs[ident] = {"path": path, "kind": kind, "presence": presence or "required"}
    all_list = re.search(r"static\s+let\s+all\s*:\s*\[FieldSpec\]\s*=\s*\[(.*?)\]", body, re.S)
    listed = re.findall(r"\w+", all_list.group(1)) if all_list else []
    not_read = re.search(r'static\s+let\s+notRead\s*:\s*\[String\]\s*=\s*\[((?:\s*"[^"]*"\s*,?)*)\s*\]', body)
    constants = dict(re.findall(r'static\s+let\s+(\w+)\s*=\s*"([^"]*)"', body))
    limit = re.search(r"static\s+let\s+listLimit\s*=\s*(\d+)", body)
    return {"specs": specs, "all": listed,
            "not_read": re.findall(r'"([^"]+)"', not_read.group(1)) if not_read else [],
            "constants": constants, "list_limit": int(limit.group(1)) if limit else None}


def test_the_swift_contract_parses_and_lists_every_field():
    for name in ("ReleaseRecord", "ChannelRecord"):
        contract = swift_contract(name)
        assert len(contract["specs"]) >= 4, name
        # `all` (what the decoder validates) is exactly the declared fields, each once
        assert sorted(contract["all"]) == sorted(contract["specs"]), name
        assert len({s["path"] for s in contract["specs"].values()}) == len(contract["specs"]), name


def test_field_names_are_spelled_only_in_the_contract_file():
    """Decoders read through FieldSpecs: no other Swift file spells a document field name."""
    paths = {s["path"].split(".")[-1].replace("[]", "")
             for name in ("ReleaseRecord", "ChannelRecord") for s in swift_contract(name)["specs"].values()}
    snake = {p for p in paths if "_" in p}  # camelCase-free names cannot be confused with Swift identifiers
    offenders = []
    for source in SWIFT_SOURCES.rglob("*.swift"):
        if source == CONTRACT:
            continue
        for literal in re.findall(r'"([a-z_]+)"', source.read_text()):
            if literal in snake:
                offenders.append((source.name, literal))
    assert not offenders, offenders


# ------------------------------------------------------------------------------- the real documents

# The emulator's state holds protobuf Values as {"type": "string_value", "value": ...}; the REST
# form is {"stringValue": ...}. Both are read, as the protobuf oneof name (what the SDKs decode).
def _kind(value: dict) -> str:
    if "type" in value and "value" in value:
        return value["type"]
    [key] = [k for k in value if k.endswith("Value")]
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def _map_fields(value: dict) -> dict:
    if "type" in value:
        return value["value"] or {}
    return value["mapValue"].get("fields") or {}


def _array_values(value: dict) -> list:
    if "type" in value:
        return value["value"] or []
    return value["arrayValue"].get("values") or []


def _flatten(fields: dict, prefix: str = "") -> dict[str, list[dict]]:
    """Wire fields -> {"a.b": [value], "files[].path": [value of every element], ...}."""
    out: dict[str, list[dict]] = {}
    for key, value in fields.items():
        path = prefix + key
        out.setdefault(path, []).append(value)
        if _kind(value) == "map_value":
            for sub, values in _flatten(_map_fields(value), path + ".").items():
                out.setdefault(sub, []).extend(values)
        elif _kind(value) == "array_value":
            for element in _array_values(value):
                if _kind(element) == "map_value":
                    for sub, values in _flatten(_map_fields(element), path + "[].").items():
                        out.setdefault(sub, []).extend(values)
    return out


# What the Firebase iOS SDK hands over for each wire type, and which the Swift reader accepts
# for each FieldKind (RecordReader.swift).
ACCEPTS = {"string": {"string_value"}, "int": {"integer_value"}, "int64": {"integer_value"},
           "double": {"double_value", "integer_value"},  # any non-boolean NSNumber
           "bool": {"boolean_value"}, "timestamp": {"timestamp_value"}, "map": {"map_value"},
           "stringArray": {"array_value"}, "intArray": {"array_value"}, "mapArray": {"array_value"}}
ELEMENT = {"stringArray": "string_value", "intArray": "integer_value", "mapArray": "map_value"}


def _compatible(kind: str, value: dict) -> bool:
    if _kind(value) not in ACCEPTS[kind]:
        return False
    return kind not in ELEMENT or all(_kind(e) == ELEMENT[kind] for e in _array_values(value))


def check_document(fields: dict, contract: dict, what: str) -> list[str]:
    """Problems of a real document (wire fields) against a Swift contract; [] when it holds."""
    flat = _flatten(fields)
    problems = []
    for ident, spec in contract["specs"].items():
        values = flat.get(spec["path"])
        parent = spec["path"].rsplit(".", 1)[0] if "." in spec["path"] else None
        if values is None:
            if spec["presence"] == "optional":
                continue
            array = parent.replace("[]", "") if parent and "[]" in parent else None
            if array in flat and not any(_array_values(v) for v in flat[array]):
                continue  # an empty array has no elements to carry the field
            problems.append(f"{what}: Swift reads {spec['path']} ({ident}), the document has no such field")
            continue
        for value in values:
            if _kind(value) == "null_value":
                if spec["presence"] == "required":
                    problems.append(f"{what}: {spec['path']} is null, Swift requires a {spec['kind']}")
                continue
            if not _compatible(spec["kind"], value):
                problems.append(f"{what}: {spec['path']} is {_kind(value)}, Swift reads {spec['kind']}")
    declared = {s["path"] for s in contract["specs"].values()} | set(contract["not_read"])
    for path in flat:
        if path not in declared and not any(d.startswith(path + ".") for d in declared):
            problems.append(f"{what}: the document has {path}, which the Swift contract neither reads nor "
                            "lists in notRead (add it to FirestoreContract.swift)")
    return problems


@pytest.fixture()
def published(fn, stores, variants, servers):
    """A real publish, delivered to the real function: (version, wire documents, firestore client)."""
    db, gcs, _ = stores
    vdir, edir = variants
    res = registry_function("publish")(vdir, "fp32", bucket=support.BUCKET, model="detector", channel="stable",
                                       report_dir=edir, parent_version=None, storage_client=gcs)
    fn.register_model(support.event_for_object(gcs, support.BUCKET, f"models/detector/{res.version}/manifest.json"))
    return res.version, support.firestore_documents(servers.control_port), db


def test_release_record_written_by_the_function_matches_the_swift_contract(published, tmp_path):
    version, docs, db = published
    contract = swift_contract("ReleaseRecord")
    consts = contract["constants"]
    # the document the Swift package lists and reads: models/{model}/releases/{channel}-{version}
    path = f"{consts['modelsCollection']}/detector/{consts['collection']}/stable-{version}"
    assert path in docs, sorted(docs)
    fields = docs[path]

    # fixtures for inspection and for the Swift tests: wire form and SDK-like form
    (tmp_path / "release.wire.json").write_text(json.dumps(fields, indent=1, sort_keys=True))
    record = db.document(path).get().to_dict()
    (tmp_path / "release.json").write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
    assert json.loads((tmp_path / "release.json").read_text())["version"] == version

    problems = check_document(fields, contract, f"release {path}")
    assert not problems, "\n".join(problems)
    # values the Swift decoder checks beyond type (Release.init): ids, prefix, uri, hash, size
    assert re.match(r"^[0-9]{8}t[0-9]{12}z-[0-9a-f]{6}$", record["version"])
    assert record["prefix"] == f"gs://{record['bucket']}/models/{record['model']}/{version}/"
    assert record["model_file"]["uri"] == record["prefix"] + record["model_file"]["path"]
    assert re.match(r"^[0-9a-f]{64}$", record["model_file"]["sha256"]) and record["model_file"]["size"] > 0
    assert re.match(r"^[0-9]{1,6}(\.[0-9]{1,6}){0,2}$", record["min_app_version"])


def test_the_contract_check_catches_drift(published):
    """The check is not vacuous: a renamed, retyped, nulled or extra field is reported."""
    version, docs, _ = published
    contract = swift_contract("ReleaseRecord")
    fields = json.loads(json.dumps(docs[f"models/detector/releases/stable-{version}"]))
    fields["modelFile"] = fields.pop("model_file")
    fields["labels"] = {"type": "string_value", "value": "circle"}
    fields["bucket"] = {"type": "null_value", "value": None}
    problems = "\n".join(check_document(fields, contract, "mutated"))
    for needle in ("Swift reads model_file.size", "labels is string_value", "bucket is null",
                   "the document has modelFile"):
        assert needle in problems, problems


def test_channel_document_written_by_the_operators_code_matches_the_swift_contract(stores, servers):
    db, _, _ = stores
    registry_function("channel_action")("pause", "detector", "stable", reason="contract test", who="tester", db=db)
    contract = swift_contract("ChannelRecord")
    path = f"models/detector/{contract['constants']['collection']}/stable"
    fields = support.firestore_documents(servers.control_port)[path]
    contract = dict(contract, not_read=list(contract["not_read"]) + _channel_fields_not_read(fields, contract))
    problems = check_document(fields, contract, f"channel {path}")
    assert not problems, "\n".join(problems)
    assert _kind(fields["paused"]) == "boolean_value" and fields["paused"]["value"] is True


def _channel_fields_not_read(fields: dict, contract: dict) -> list[str]:
    """The control document carries audit fields (history, timestamps) the app has no use for;
    the check there is one-way: what Swift reads must exist with its type."""
    read = {s["path"] for s in contract["specs"].values()}
    return [p for p in _flatten(fields) if p not in read]


def test_release_queries_fit_the_rules_and_the_index():
    contract = swift_contract("ReleaseRecord")
    rules = (ROOT / "infra" / "firestore.rules").read_text()
    rules_limit = int(re.search(r"request\.query\.limit\s*<=\s*(\d+)", rules).group(1))
    assert contract["list_limit"] is not None and contract["list_limit"] <= rules_limit
    index = {"collectionGroup": contract["constants"]["collection"], "queryScope": "COLLECTION",
             "fields": [{"fieldPath": contract["specs"]["channel"]["path"], "order": "ASCENDING"},
                        {"fieldPath": contract["specs"]["version"]["path"], "order": "DESCENDING"}]}
    assert index in json.loads((ROOT / "infra" / "firestore.indexes.json").read_text())["indexes"]


def _schema_kind(prop: dict) -> tuple[set[str], bool]:
    """(Swift kinds that can hold this JSON-Schema property, whether it may be null)."""
    types = prop.get("type")
    types = set(types) if isinstance(types, list) else {types} if types else {"string"}  # enum of strings
    nullable = "null" in types
    types.discard("null")
    [json_type] = types
    if json_type == "array":
        item = prop.get("items", {}).get("type")
        return {"integer": {"intArray"}, "string": {"stringArray"}}.get(item, {"mapArray"}), nullable
    return {"string": {"string"}, "integer": {"int", "int64"}, "number": {"double"}, "boolean": {"bool"},
            "object": {"map"}}[json_type], nullable


def test_fields_copied_from_the_manifest_agree_with_its_schema():
    """Fields the function copies from the manifest (input, outputs) may be null or absent in
    other publishes than the one above (an fp32 model has no scale): the schema says which, and
    the Swift presence must allow it."""
    schema = json.loads((ROOT / "functions" / "register_model" / "manifest.schema.json").read_text())
    sources = {"input": schema["properties"]["input"]}
    for output in ("boxes", "classes", "scores", "count"):
        sources[f"outputs.{output}"] = schema["$defs"]["output"]
    specs = {s["path"]: s for s in swift_contract("ReleaseRecord")["specs"].values()}
    checked = 0
    for parent, obj in sources.items():
        for name, prop in obj["properties"].items():
            spec = specs.get(f"{parent}.{name}")
            assert spec, f"the manifest schema has {parent}.{name}; the Swift contract does not read it"
            kinds, nullable = _schema_kind(prop)
            assert spec["kind"] in kinds, (spec, kinds)
            if nullable:
                assert spec["presence"] in ("nullable", "optional"), spec
            if name not in obj.get("required", []):
                assert spec["presence"] == "optional", spec
            checked += 1
    assert checked >= 14
