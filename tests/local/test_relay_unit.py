"""Which storage API responses are finalize events, and the event's CloudEvent attributes."""
from __future__ import annotations

import json

from edgeship.relay import EVENT_TYPE, finalized_object, make_event

OBJ = {"kind": "storage#object", "bucket": "b", "name": "m/v1/manifest.json",
       "generation": "17", "metageneration": "1", "size": "3", "acl": [{"role": "OWNER"}],
       "updated": "2026-11-24T12:00:00Z"}


def _body(doc) -> bytes:
    return json.dumps(doc).encode()


def test_uploads_copies_rewrites_and_composes_finalize() -> None:
    assert finalized_object("POST", "/upload/storage/v1/b/b/o", 200, _body(OBJ)) == OBJ
    assert finalized_object("PUT", "/upload/storage/v1/b/b/o", 200, _body(OBJ)) == OBJ
    copy = "/storage/v1/b/b/o/src/copyTo/b/b/o/m%2Fv1%2Fmanifest.json"
    assert finalized_object("POST", copy, 200, _body(OBJ)) == OBJ
    rewrite = "/storage/v1/b/b/o/src/rewriteTo/b/b/o/dst"
    done = {"kind": "storage#rewriteResponse", "done": True, "resource": OBJ}
    assert finalized_object("POST", rewrite, 200, _body(done)) == OBJ
    assert finalized_object("POST", rewrite, 200, _body({**done, "done": False})) is None
    assert finalized_object("POST", "/storage/v1/b/b/o/dst/compose", 200, _body(OBJ)) == OBJ


def test_non_finalizing_responses_are_ignored() -> None:
    # opening a resumable session answers an object with generation "0": nothing written yet
    assert finalized_object("POST", "/upload/storage/v1/b/b/o", 200,
                            _body({**OBJ, "generation": "0"})) is None
    assert finalized_object("PATCH", "/storage/v1/b/b/o/x", 200, _body(OBJ)) is None
    assert finalized_object("PUT", "/storage/v1/b/b/o/x", 200, _body(OBJ)) is None  # update
    assert finalized_object("GET", "/storage/v1/b/b/o/x", 200, _body(OBJ)) is None
    assert finalized_object("POST", "/upload/storage/v1/b/b/o", 412, _body(OBJ)) is None
    assert finalized_object("POST", "/upload/storage/v1/b/b/o", 308, b"") is None
    assert finalized_object("POST", "/upload/storage/v1/b/b/o", 200, b"not json") is None


def test_event_attributes_match_eventarc() -> None:
    event = make_event(OBJ)
    assert event["type"] == EVENT_TYPE == "google.cloud.storage.object.v1.finalized"
    assert event["source"] == "//storage.googleapis.com/projects/_/buckets/b"
    assert event["subject"] == "objects/m/v1/manifest.json"
    assert event["time"] == "2026-11-24T12:00:00Z" and event["specversion"] == "1.0"
    assert event["key"] == "b/m/v1/manifest.json#17"
    assert "acl" not in event["data"] and event["data"]["generation"] == "17"
    assert make_event(OBJ)["id"] != event["id"]  # one id per event, kept across its retries
