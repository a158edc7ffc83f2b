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


def test_a_listener_that_hangs_while_closing_does_not_stop_the_client(private, make_variants, tmp_path):
    """CI saw the supervisor stop after 'listener stopped; subscribing again' when the server went
    away: closing the dead listener can block inside the Firestore library. Here closing blocks
    for good (the real watches' unsubscribe replaced by a wait); the client must still subscribe
    again and deliver the next release."""
    import threading

    srv, gcs, fn = private
    client = ModelClient("detector", "stable", tmp_path / "cache", db=srv.firestore_client(),
                         storage_client=gcs, supervise_interval_s=0.2).start()
    never = threading.Event()
    try:
        first = _publish_and_register(make_variants, srv, gcs, fn)
        assert client.wait_for(first.version, 30) is not None, client.last_error
        for watch in client._watches.values():
            watch.unsubscribe = lambda: never.wait()
        srv.stop_firestore()
        srv.start_firestore()
        second = _publish_and_register(make_variants, srv, gcs, fn)
        assert client.wait_for(second.version, 60) is not None, (client.last_error, client.history[-5:])
        assert client.reconnects >= 1
    finally:
        client.stop()  # waits 5 s for the hung close, then leaves it
        never.set()


def test_a_listener_that_never_delivers_its_first_snapshot_is_replaced(private, make_variants, tmp_path):
    """A new listener stuck connecting looks alive (its thread runs) but never calls back: after
    first_snapshot_timeout_s it is re-created. The first subscription's callbacks are dropped
    here (what a stream stuck in the library looks like to the client)."""
    srv, gcs, fn = private
    first = _publish_and_register(make_variants, srv, gcs, fn)
    client = ModelClient("detector", "stable", tmp_path / "cache", db=srv.firestore_client(),
                         storage_client=gcs, supervise_interval_s=0.2, first_snapshot_timeout_s=1.0)
    real_releases, real_control = client._on_releases, client._on_control

    def stuck_releases(*args, gen):
        if gen > 1:
            real_releases(*args, gen=gen)

    def stuck_control(*args, gen):
        if gen > 1:
            real_control(*args, gen=gen)

    client._on_releases, client._on_control = stuck_releases, stuck_control
    client.start()
    try:
        assert client.wait_for(first.version, 60) is not None, (client.last_error, client.history[-5:])
        reasons = [h["reason"] for h in client.history if h["event"] == "reconnect"]
        assert reasons and reasons[0].startswith("no first snapshot within 1 s"), client.history
        assert client.reconnects >= 1
    finally:
        client.stop()
