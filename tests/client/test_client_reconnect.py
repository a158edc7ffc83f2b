"""The client survives its Firestore server going away: the listener is re-created and the next
release is still delivered. Uses private servers (the shared stack's Firestore is left alone)."""
from __future__ import annotations

import time

import pytest

from components.publish import core as publish_core
from edgeship.delivery.client import ModelClient

pytestmark = [pytest.mark.stack,
              # the Firestore library's watch thread re-raises the dropped stream's error on exit
              pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")]
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture()
def private(tmp_path):
    from tests.support import delivery as support

    srv = support.Servers(tmp_path / "servers").start()
    gcs = srv.storage_client()
    gcs.create_bucket(support.BUCKET)
    fn = support.load_function(f"register_model_reconnect_{id(gcs)}")
    yield srv, gcs, fn
    srv.stop()


def _publish_and_register(make_variants, srv, gcs, fn):
    vdir, edir = make_variants()
    result = publish_core.publish(vdir, "fp32", bucket="edgeship", model="detector",
                                  report_dir=edir, parent_version=None, storage_client=gcs)
    fn.set_clients(srv.firestore_client(), gcs)
    blob = gcs.bucket("edgeship").get_blob(f"models/detector/{result.version}/manifest.json")
    assert fn.handle(dict(blob._properties))["decision"] == "registered"
    return result


def test_listener_is_recreated_after_the_server_restarts(private, make_variants, tmp_path):
    srv, gcs, fn = private
    client = ModelClient("detector", "stable", tmp_path / "cache", db=srv.firestore_client(),
                         storage_client=gcs, supervise_interval_s=0.2).start()
    try:
        first = _publish_and_register(make_variants, srv, gcs, fn)
        assert client.wait_for(first.version, 30) is not None, client.last_error
        srv.stop_firestore()
        time.sleep(1.0)
        srv.start_firestore()  # a fresh, empty emulator on the same port
        second = _publish_and_register(make_variants, srv, gcs, fn)
        assert client.wait_for(second.version, 60) is not None, (client.last_error, client.history[-5:])
        assert client.current_version == second.version
        assert client.reconnects >= 1 and any(h["event"] == "reconnect" for h in client.history)
    finally:
        client.stop()
