"""Reliability of registration on the local stack (real relay, function, Firestore emulator):
20 concurrent publishes, every event delivered three times, Firestore down and back."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edgeship.localcloud import processes

ROOT = Path(__file__).resolve().parents[2]

from components.publish import core
from edgeship.delivery import registry
from edgeship.localcloud import stack as local_stack

pytestmark = pytest.mark.stack
WAIT = 60.0


def _publish(artifacts, **kw):
    vdir, edir = artifacts
    return core.publish(vdir, "fp32", bucket="edgeship", model="detector", report_dir=edir,
                        parent_version=None, **kw)


def _records(db) -> tuple[list[str], list[str]]:
    model = db.collection("models").document("detector")
    return (sorted(d.id for d in model.collection("versions").stream()),
            sorted(d.id for d in model.collection("releases").stream()))


def _db(config):
    from google.cloud import firestore

    return firestore.Client(project=config.project)


def _wait_firestore_ready(config, timeout: float = WAIT) -> None:
    """Until a fresh client's call succeeds (each probe's channel is closed after it)."""
    deadline = time.monotonic() + timeout
    while True:
        client = _db(config)
        try:
            client.collection("_ready").document("probe").get(timeout=2, retry=None)
            return
        except Exception:  # noqa: BLE001 - anything but an answer means not ready yet
            assert time.monotonic() < deadline, "the Firestore emulator did not come back"
            time.sleep(0.1)
        finally:
            client._firestore_api.transport.close()


def test_twenty_concurrent_publishes_are_all_recorded_and_the_channel_ends_on_the_newest(
        clean_stack, artifacts, tmp_path):
    from edgeship.delivery.client import ModelClient

    client = ModelClient("detector", "stable", tmp_path / "phone").start()
    try:
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda _: _publish(artifacts), range(20)))
        versions = sorted(r.version for r in results)
        assert len(set(versions)) == 20
        assert local_stack.drain(clean_stack, timeout=WAIT)
        db = _db(clean_stack)
        recorded, releases = _records(db)
        assert recorded == versions
        assert releases == [f"stable-{v}" for v in versions]
        assert registry.current_version(db, "detector", "stable") == versions[-1]
        assert client.wait_for(versions[-1], WAIT) is not None, client.last_error
    finally:
        client.stop()


def test_each_event_delivered_three_times_yields_one_record_each(clean_stack, artifacts, support):
    import requests
    from cloudevents.conversion import to_binary
    from google.cloud import storage as gcs_mod

    results = [_publish(artifacts) for _ in range(3)]
    assert local_stack.drain(clean_stack, timeout=WAIT)
    gcs = gcs_mod.Client(project=clean_stack.project,
                         credentials=__import__("google.auth.credentials", fromlist=["x"]).AnonymousCredentials())
    events = [support.event_for_object(gcs, "edgeship", f"models/detector/{r.version}/manifest.json")
              for r in results]
    # the relay delivered each once; deliver each twice more, concurrently, as Eventarc may
    def post(event):
        headers, body = to_binary(event)
        return requests.post(clean_stack.function_url, headers=headers, data=body, timeout=30).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(post, events * 2))
    assert codes == [200] * 6
    recorded, releases = _records(_db(clean_stack))
    versions = sorted(r.version for r in results)
    assert recorded == versions and releases == [f"stable-{v}" for v in versions]


def test_firestore_down_gives_retryable_errors_and_redelivery_after_restart_registers(
        clean_stack, stack_function, artifacts):
    config = stack_function(ROOT / "functions/register_model/main.py", "register_model",
                            {"REGISTER_MODEL_FIRESTORE_TIMEOUT_S": "1"})
    state = local_stack._load_state(config)
    processes.stop_process(state["servers"]["firestore"], "firestore")
    try:
        before = local_stack.relay_stats(config)
        result = _publish(artifacts)
        deadline = time.monotonic() + WAIT
        while local_stack.relay_stats(config)["failures"] <= before.get("failures", 0):
            assert time.monotonic() < deadline, "the function never answered with an error"
            time.sleep(0.2)
    finally:
        local_stack.up(config)  # restarts only what is stopped: the Firestore emulator
    # up() returns once the port is bound; wait until the emulator answers a call, so that what
    # follows measures the function's recovery, not the emulator's start-up
    _wait_firestore_ready(config)
    ready = time.monotonic()
    assert local_stack.drain(config, timeout=WAIT)
    # prompt recovery: the relay's next retry (backoff <= 5 s) registers it; no client of the
    # function is left waiting out a gRPC reconnect backoff
    assert time.monotonic() - ready < 20, "the function did not recover promptly"
    stats = local_stack.relay_stats(config)
    assert stats.get("dead", 0) == 0, stats
    # the function said why it refused: transient, retry (a 5xx to the relay)
    log_text = config.log_path("function").read_text()
    assert '"decision": "retry"' in log_text and result.version in log_text
    recorded, releases = _records(_db(config))
    assert recorded == [result.version] and releases == [f"stable-{result.version}"]


def test_a_bad_manifest_is_acknowledged_not_retried(clean_stack, artifacts):
    """Permanent errors answer 2xx: the relay (like Eventarc) delivers once and moves on."""
    from edgeship.base import storage

    version = _publish(artifacts).version
    assert local_stack.drain(clean_stack, timeout=WAIT)
    before = local_stack.relay_stats(clean_stack)
    bucket = storage.gcs_client().bucket("edgeship")
    bad = "20200101t000000000000z-000000"
    bucket.blob(f"models/detector/{bad}/manifest.json").upload_from_string(
        b'{"schema_version": 1, "model": "detector"}', if_generation_match=0)
    assert local_stack.drain(clean_stack, timeout=WAIT)
    after = local_stack.relay_stats(clean_stack)
    assert after["failures"] == before["failures"] and after.get("dead", 0) == 0
    assert after["delivered"] == before["delivered"] + 1
    recorded, releases = _records(_db(clean_stack))
    assert recorded == [version] and releases == [f"stable-{version}"]
    assert '"decision": "rejected"' in clean_stack.log_path("function").read_text()
