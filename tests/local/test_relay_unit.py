"""Which storage API responses are finalize events, and the event's CloudEvent attributes."""
from __future__ import annotations

import json

from edgeship.localcloud.relay import EVENT_TYPE, finalized_object, make_event

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


def test_failing_deliveries_back_off_then_go_to_the_dead_letter_file(tmp_path) -> None:
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from edgeship.localcloud.relay import Relay

    hits: list[float] = []

    class Always500(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            hits.append(time.monotonic())
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Always500)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    relay = Relay("http://127.0.0.1:9", f"http://127.0.0.1:{server.server_port}/", tmp_path,
                  max_attempts=3)
    try:
        relay.load()
        relay.start_workers()
        relay.accept(OBJ)
        assert relay.drain(30)
    finally:
        relay.stop()
        server.shutdown()
    assert len(hits) == 3
    assert hits[1] - hits[0] >= 0.1 and hits[2] - hits[1] >= 0.2  # exponential backoff
    stats = relay.snapshot()
    assert stats["dead"] == 1 and stats["delivered"] == 0 and stats["failures"] == 3
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [d["key"] for d in dead] == ["b/m/v1/manifest.json#17"]
    # a restarted relay does not retry an event it gave up on
    again = Relay("http://127.0.0.1:9", "http://127.0.0.1:9/", tmp_path)
    assert again.load() == 0
    again.stop()


def test_a_restarted_relay_replays_what_it_had_not_delivered(tmp_path) -> None:
    from edgeship.localcloud.relay import Relay

    first = Relay("http://127.0.0.1:9", "http://127.0.0.1:9/", tmp_path)
    first.load()  # no workers: nothing is delivered
    first.accept(OBJ)
    first.accept({**OBJ, "generation": "18"})
    first.accept(OBJ)  # the same generation twice is one event
    again = Relay("http://127.0.0.1:9", "http://127.0.0.1:9/", tmp_path)
    assert again.load() == 2
    assert again.snapshot()["pending"] == 2
