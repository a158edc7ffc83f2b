"""The register_model Cloud Function against real local servers (fake-gcs-server, Firestore emulator).

Each "Bad input" case of the delivery issue is driven with a real CloudEvent and must leave
Firestore exactly as it was (the emulator's whole state is compared), except the intended write.
"""
from __future__ import annotations

import copy
import hashlib
import json

import pytest

from components.publish import core as publish_core
from edgeship.contracts import manifest as mf
from edgeship.delivery import registry

pytestmark = pytest.mark.stack

BUCKET = "edgeship"


def _publish(variants, gcs, model="detector", channel="stable", version=None):
    vdir, edir = variants
    return publish_core.publish(vdir, "fp32", bucket=BUCKET, model=model, channel=channel,
                                report_dir=edir, parent_version=None, version=version,
                                storage_client=gcs)


def _deliver(fn, gcs, name, **overrides):
    from tests.support.delivery import event_for_object

    fn.register_model(event_for_object(gcs, BUCKET, name, **overrides))


def _docs(servers):
    from tests.support.delivery import firestore_documents

    return firestore_documents(servers.control_port)


def _put(bucket, name, body: bytes, sha: str | None = None):
    blob = bucket.blob(name)
    if sha is not None:
        blob.metadata = {"sha256": sha}
    blob.upload_from_string(body, if_generation_match=0)


def _decisions(capsys):
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [rec for rec in lines if "decision" in rec]


# ------------------------------------------------------------------------------------ happy path

def test_registers_version_and_release_records(fn, stores, variants, servers, capsys):
    db, gcs, _ = stores
    res = _publish(variants, gcs)
    _deliver(fn, gcs, f"models/detector/{res.version}/manifest.json")

    model = db.collection("models").document("detector")
    version_doc = model.collection("versions").document(res.version).get().to_dict()
    assert version_doc["manifest"] == res.manifest
    assert version_doc["prefix"] == f"gs://{BUCKET}/models/detector/{res.version}/"
    release = model.collection("releases").document(f"stable-{res.version}").get().to_dict()
    assert release["version"] == res.version and release["channel"] == "stable"
    tflite = next(f for f in res.manifest["files"] if f["format"] == "tflite")
    assert release["model_file"]["sha256"] == tflite["sha256"]
    assert release["model_file"]["size"] == tflite["size"]
    assert release["model_file"]["uri"] == f"gs://{BUCKET}/models/detector/{res.version}/model.tflite"
    assert release["min_app_version"] == "1.0.0" and release["input"]["shape"] == [1, 8, 8, 3]
    assert registry.newest_release(db, "detector", "stable")["version"] == res.version
    assert set(_docs(servers)) == {f"models/detector/versions/{res.version}",
                                   f"models/detector/releases/stable-{res.version}"}
    (rec,) = _decisions(capsys)
    assert rec["decision"] == "registered" and rec["severity"] == "NOTICE"
    assert rec["model"] == "detector" and rec["version"] == res.version


class _NoReads:
    """A storage client that fails the test on any use: "ignored"/"rejected" proves no read."""

    def __getattr__(self, name):
        raise AssertionError(f"the function used Cloud Storage ({name}) for an event it must not read for")


def _resource(name, size="12"):
    return {"bucket": BUCKET, "name": name, "size": size, "generation": "1"}


def test_objects_outside_version_folders_are_ignored_without_any_read(fn, stores, servers, capsys):
    from tests.support.delivery import finalized_event

    db, _, _ = stores
    fn.set_clients(db, _NoReads())
    for name in ("notes.txt", "models/detector/manifest.json.tmp", "models/detector/x",
                 "models/detector/20260101t000000000000z-abcdef/sub/model.tflite"):
        assert fn.handle(_resource(name)) == {"decision": "ignored"}
    fn.register_model(finalized_event(_resource("x/labels.txt", "3")))
    assert _docs(servers) == {} and _decisions(capsys) == []


def test_a_file_in_a_version_folder_without_a_manifest_is_ignored_after_one_lookup(fn, stores, servers, capsys):
    # (a file finalize re-checks its folder's pending manifest: docs/delivery.md, late files)
    out = fn.handle(_resource("models/detector/20260101t000000000000z-abcdef/model.tflite"))
    assert out["decision"] == "ignored" and "no manifest" in out["reason"]
    assert _docs(servers) == {} and _decisions(capsys) == []


# ------------------------------------------------------------------------------------ bad input

def _valid_manifest_in_folder(variants, gcs, bucket, version=None):
    """Upload a variant's files for a fresh version but no manifest; return (version, manifest)."""
    vdir, edir = variants
    version = version or mf.new_version()
    manifest, uploads = publish_core.build_manifest(
        vdir, "fp32", model="detector", channel="stable", version=version,
        created_at="2026-11-24T12:00:00.000000Z", report_dir=edir)
    for up in uploads:
        blob = bucket.blob(f"models/detector/{version}/{up.name}")
        blob.metadata = {"sha256": up.sha256}
        blob.upload_from_filename(str(up.local), if_generation_match=0)
    return version, manifest


def _mutations():
    def wrong_schema_version(m):
        m["schema_version"] = 2

    def missing_field(m):
        del m["files"][0]["sha256"]

    def missing_top_field(m):
        del m["input"]

    def extra_field(m):
        m["download_url"] = "http://example.com/evil.tflite"

    def mistyped_field(m):
        m["files"][0]["size"] = str(m["files"][0]["size"])

    def mistyped_labels(m):
        m["labels"] = "circle,square"

    def two_models(m):
        m["files"].append(dict(m["files"][0], path="other.tflite"))

    def file_path_trick(m):
        m["files"][1]["path"] = "../../other/labels.txt"

    return [wrong_schema_version, missing_field, missing_top_field, extra_field, mistyped_field,
            mistyped_labels, two_models, file_path_trick]


@pytest.mark.parametrize("mutate", _mutations(), ids=lambda f: f.__name__)
def test_schema_violations_are_rejected(fn, stores, variants, servers, capsys, mutate):
    db, gcs, bucket = stores
    version, manifest = _valid_manifest_in_folder(variants, gcs, bucket)
    bad = copy.deepcopy(manifest)
    mutate(bad)
    _put(bucket, f"models/detector/{version}/manifest.json", json.dumps(bad).encode())
    _deliver(fn, gcs, f"models/detector/{version}/manifest.json")
    assert _docs(servers) == {}
    (rec,) = _decisions(capsys)
    assert rec["decision"] == "rejected" and rec["severity"] == "ERROR"
    assert "schema" in rec["reason"], rec


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00", b"[1, 2, 3]", b""],
                         ids=["broken", "not-utf8", "array", "empty"])
def test_manifest_that_is_not_a_json_object_is_rejected(fn, stores, variants, servers, capsys, body):
    db, gcs, bucket = stores
    version, _ = _valid_manifest_in_folder(variants, gcs, bucket)
    _put(bucket, f"models/detector/{version}/manifest.json", body)
    _deliver(fn, gcs, f"models/detector/{version}/manifest.json")
    assert _docs(servers) == {}
    (rec,) = _decisions(capsys)
    assert rec["decision"] == "rejected" and ("JSON" in rec["reason"] or "schema" in rec["reason"])


def _break_file(bucket, version, manifest, how):
    model_entry = manifest["files"][0]
    name = f"models/detector/{version}/{model_entry['path']}"
    if how == "missing":
        bucket.blob(name).delete()
    elif how == "wrong_size":
        model_entry["size"] += 1
    elif how == "wrong_hash_metadata":  # metadata claims the right sha256: the bytes decide
        bucket.blob(name).delete()
        _put(bucket, name, b"X" * model_entry["size"], sha=model_entry["sha256"])
    elif how == "wrong_hash_content":  # no metadata: the function hashes the object itself
        bucket.blob(name).delete()
        _put(bucket, name, b"X" * model_entry["size"])


@pytest.mark.parametrize("how", ["missing", "wrong_size", "wrong_hash_metadata", "wrong_hash_content"])
def test_listed_file_problems_are_rejected(fn, stores, variants, servers, capsys, how):
    """A missing file leaves the manifest pending (it registers when the file lands:
    test_hostile_inputs.py); a wrong size or hash is rejected, whatever the metadata claims."""
    db, gcs, bucket = stores
    version, manifest = _valid_manifest_in_folder(variants, gcs, bucket)
    _break_file(bucket, version, manifest, how)
    _put(bucket, f"models/detector/{version}/manifest.json", json.dumps(manifest).encode())
    _deliver(fn, gcs, f"models/detector/{version}/manifest.json")
    assert _docs(servers) == {}
    (rec,) = _decisions(capsys)
    assert rec["decision"] == ("pending" if how == "missing" else "rejected")
    assert "model.tflite" in rec["reason"]
    assert {"missing": "not in", "wrong_size": "bytes", "wrong_hash_metadata": "content",
            "wrong_hash_content": "content"}[how] in rec["reason"]
    assert rec["field"] == {"missing": "files/0/path", "wrong_size": "files/0/size",
                            "wrong_hash_metadata": "files/0/sha256", "wrong_hash_content": "files/0/sha256"}[how]


def test_file_hashed_from_content_when_metadata_is_absent_is_accepted(fn, stores, variants, servers):
    db, gcs, bucket = stores
    version, manifest = _valid_manifest_in_folder(variants, gcs, bucket)
    name = f"models/detector/{version}/model.tflite"
    body = bucket.blob(name).download_as_bytes()
    bucket.blob(name).delete()
    _put(bucket, name, body)  # same bytes, no sha256 metadata
    assert hashlib.sha256(body).hexdigest() == manifest["files"][0]["sha256"]
    _put(bucket, f"models/detector/{version}/manifest.json", json.dumps(manifest).encode())
    _deliver(fn, gcs, f"models/detector/{version}/manifest.json")
    assert f"models/detector/versions/{version}" in _docs(servers)


@pytest.mark.parametrize("name", [
    "models/../detector/20260101t000000000000z-abcdef/manifest.json",
    "models/detector/../manifest.json",
    "models/a..b/20260101t000000000000z-abcdef/manifest.json",
    "models/Detector/20260101t000000000000z-abcdef/manifest.json",
    "models/" + "d" * 64 + "/20260101t000000000000z-abcdef/manifest.json",
    "models/det\u043eector/20260101t000000000000z-abcdef/manifest.json",   # Cyrillic o
    "models/detector/20260101t000000000000z-abcdef\uff0fx/manifest.json",  # fullwidth solidus
    "models/detector/20260101t000000000000z-abcdef/sub/manifest.json",     # not its own folder
    "manifest.json",
    "elsewhere/detector/20260101t000000000000z-abcdef/manifest.json",
], ids=["dotdot-model", "dotdot-version", "double-dot", "uppercase", "too-long", "confusable",
        "fullwidth-slash", "subfolder", "bucket-root", "wrong-prefix"])
def test_path_tricks_are_rejected_before_any_read(fn, stores, servers, capsys, name):
    db, _, _ = stores
    fn.set_clients(db, _NoReads())  # a rejection (not an error) shows the path alone decided
    out = fn.handle(_resource(name, "100"))
    assert out["decision"] == "rejected" and out["severity"] == "ERROR" and out["field"] == "name"
    assert _docs(servers) == {}


def test_manifest_for_another_folder_is_rejected(fn, stores, variants, servers, capsys):
    db, gcs, bucket = stores
    version, manifest = _valid_manifest_in_folder(variants, gcs, bucket)
    other, _ = _valid_manifest_in_folder(variants, gcs, bucket)
    # a manifest naming `version`, copied into `other`'s folder
    _put(bucket, f"models/detector/{other}/manifest.json", json.dumps(manifest).encode())
    _deliver(fn, gcs, f"models/detector/{other}/manifest.json")
    assert _docs(servers) == {}
    (rec,) = _decisions(capsys)
    assert rec["decision"] == "rejected" and "lies in" in rec["reason"]


def test_ten_megabyte_manifest_is_rejected_by_its_size_without_reading(fn, stores, variants, servers, capsys):
    db, gcs, bucket = stores
    version, manifest = _valid_manifest_in_folder(variants, gcs, bucket)
    big = dict(manifest, pipeline_run_id="x" * 200)
    body = json.dumps(big).encode() + b" " * (10 * 1024 * 1024)
    name = f"models/detector/{version}/manifest.json"
    _put(bucket, name, body)
    from tests.support.delivery import event_for_object

    event = event_for_object(gcs, BUCKET, name)
    assert int(event.data["size"]) > 10_000_000
    bucket.blob(name).delete()  # the size in the event alone must decide: a read would now fail
    fn.register_model(event)
    assert _docs(servers) == {}
    (rec,) = _decisions(capsys)
    assert rec["decision"] == "rejected" and "limit" in rec["reason"]


def test_oversized_manifest_with_a_lying_event_size_is_read_only_up_to_the_limit(fn, stores, variants, servers, capsys):
    db, gcs, bucket = stores
    version, manifest = _valid_manifest_in_folder(variants, gcs, bucket)
    name = f"models/detector/{version}/manifest.json"
    _put(bucket, name, json.dumps(manifest).encode() + b" " * (10 * 1024 * 1024))
    _deliver(fn, gcs, name, size="100")
    assert _docs(servers) == {}
    (rec,) = _decisions(capsys)
    assert rec["decision"] == "rejected" and "limit" in rec["reason"]


# --------------------------------------------------------------------------- ordering, duplicates

def test_same_event_three_times_yields_one_record(fn, stores, variants, servers, capsys):
    db, gcs, _ = stores
    res = _publish(variants, gcs)
    from tests.support.delivery import event_for_object

    event = event_for_object(gcs, BUCKET, f"models/detector/{res.version}/manifest.json")
    for _ in range(3):
        fn.register_model(event)
    docs = _docs(servers)
    assert set(docs) == {f"models/detector/versions/{res.version}",
                         f"models/detector/releases/stable-{res.version}"}
    assert [r["decision"] for r in _decisions(capsys)] == ["registered", "duplicate", "duplicate"]


def test_older_version_arriving_after_newer_does_not_move_the_channel_back(fn, stores, variants, servers):
    db, gcs, _ = stores
    old = _publish(variants, gcs)
    new = _publish(variants, gcs)
    assert old.version < new.version
    _deliver(fn, gcs, f"models/detector/{new.version}/manifest.json")
    _deliver(fn, gcs, f"models/detector/{old.version}/manifest.json")
    assert registry.newest_release(db, "detector", "stable")["version"] == new.version
    assert registry.current_version(db, "detector", "stable") == new.version
    assert {f"models/detector/versions/{old.version}", f"models/detector/versions/{new.version}"} <= set(_docs(servers))


def test_a_different_manifest_for_a_registered_version_is_rejected(fn, stores, variants, servers, capsys):
    db, gcs, bucket = stores
    res = _publish(variants, gcs)
    name = f"models/detector/{res.version}/manifest.json"
    _deliver(fn, gcs, name)
    before = _docs(servers)
    # an operator with delete rights replaces the manifest: the registry must not follow
    bucket.blob(name).delete()
    _put(bucket, name, json.dumps(dict(res.manifest, pipeline_run_id="tampered")).encode())
    _deliver(fn, gcs, name)
    assert _docs(servers) == before
    recs = _decisions(capsys)
    assert recs[-1]["decision"] == "rejected" and "another manifest" in recs[-1]["reason"]


def test_release_is_completed_on_redelivery_after_a_partial_registration(fn, stores, variants, servers):
    """If a crash left only the version record, the redelivery writes the release record."""
    db, gcs, _ = stores
    res = _publish(variants, gcs)
    name = f"models/detector/{res.version}/manifest.json"
    _deliver(fn, gcs, name)
    db.collection("models").document("detector").collection("releases").document(
        f"stable-{res.version}").delete()
    _deliver(fn, gcs, name)
    assert f"models/detector/releases/stable-{res.version}" in _docs(servers)


# ------------------------------------------------------------------------------- transient errors

def test_firestore_down_answers_5xx_and_redelivery_after_restart_registers(stores, variants, servers, monkeypatch):
    """Over HTTP, through functions-framework's own app: 500 while Firestore is down, then 200."""
    import functions_framework
    from cloudevents.conversion import to_binary

    from tests.support.delivery import event_for_object

    db, gcs, _ = stores
    res = _publish(variants, gcs)
    event = event_for_object(gcs, BUCKET, f"models/detector/{res.version}/manifest.json")
    app = functions_framework.create_app(target="register_model", source=str(
        __import__("pathlib").Path(__file__).resolve().parents[2] / "functions" / "register_model" / "main.py"),
        signature_type="cloudevent")
    http = app.test_client()
    monkeypatch.setenv("REGISTER_MODEL_FIRESTORE_TIMEOUT_S", "2")
    for key, value in servers.env().items():  # the app's own module makes its clients from env
        monkeypatch.setenv(key, value)
    headers, body = to_binary(event)

    servers.stop_firestore()
    try:
        for _ in range(2):  # twice: the gRPC channel goes into its reconnect backoff
            reply = http.post("/", headers=headers, data=body)
            assert reply.status_code >= 500, reply.data
    finally:
        servers.start_firestore()
    # the emulator's port is bound before it serves: wait until a fresh client's call succeeds,
    # then the function (which closed its failed channel) must register on the first redelivery
    from tests.functions.test_hostile_inputs import wait_firestore_ready

    wait_firestore_ready(servers)
    reply = http.post("/", headers=headers, data=body)
    assert reply.status_code == 200, reply.data
    docs = _docs(servers)
    assert f"models/detector/versions/{res.version}" in docs
    assert f"models/detector/releases/stable-{res.version}" in docs
