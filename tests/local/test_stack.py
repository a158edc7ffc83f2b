"""The local cloud stack: lifecycle, errors, event delivery (the Eventarc stand-in), Firestore."""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from edgeship.cli import main as cli_main
from edgeship.localcloud import processes
from edgeship.localcloud import stack as ls

pytestmark = pytest.mark.stack
RECORDER = Path(__file__).with_name("recorder_function.py")


def _fresh_config(tmp_path: Path, **kw) -> ls.StackConfig:
    base = dict(gcs_port=ls.free_port(), firestore_port=ls.free_port(),
                function_port=ls.free_port(), state_dir=tmp_path / "state",
                function_source=RECORDER, function_target="record",
                function_env={"RECORDER_FILE": str(tmp_path / "events.jsonl")})
    return ls.StackConfig(**{**base, **kw})


def _by_name(deliveries: list[dict], name: str) -> list[dict]:
    return [d for d in deliveries if d["data"].get("name") == name]


# ----------------------------------------------------------------------------------- lifecycle
def test_up_down_status_are_idempotent(tmp_path: Path, capsys) -> None:
    config = _fresh_config(tmp_path)
    try:
        first = ls.up(config)
        assert sorted(first["started"]) == sorted(ls.SERVERS)
        again = ls.up(config)
        assert again["started"] == [] and sorted(again["already_running"]) == sorted(ls.SERVERS)
        rows = {s.name: s for s in ls.status(config)}
        assert set(rows) == set(ls.SERVERS)
        for s in rows.values():
            assert s.running and s.healthy and s.pid, s
            assert s.log.is_file() and s.log.parent == config.state_dir
        assert rows["relay"].port == config.gcs_port
        assert rows["firestore"].port == config.firestore_port

        # the CLI says so too, and prints the env to export
        args = ["local", "up", "--gcs-port", str(config.gcs_port), "--firestore-port",
                str(config.firestore_port), "--function-port", str(config.function_port),
                "--state-dir", str(config.state_dir), "--function-source", str(RECORDER),
                "--function-target", "record"]
        capsys.readouterr()
        assert cli_main(args) == 0
        out = capsys.readouterr()
        assert "already running" in out.err
        assert f"export STORAGE_EMULATOR_HOST=http://127.0.0.1:{config.gcs_port}" in out.out
        assert f"export FIRESTORE_EMULATOR_HOST=127.0.0.1:{config.firestore_port}" in out.out
        assert "export GOOGLE_CLOUD_PROJECT=edgeship-local" in out.out
        assert cli_main(["local", "status"] + args[2:]) == 0
        assert "healthy" in capsys.readouterr().out

        # the default bucket exists
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project=config.project, credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": config.gcs_url})
        assert [b.name for b in client.list_buckets()] == ["edgeship"]
    finally:
        stopped = ls.down(config)
    assert sorted(stopped) == sorted(ls.SERVERS)
    assert ls.down(config) == []
    assert not any(s.running or s.healthy for s in ls.status(config))
    with socket.create_server(("127.0.0.1", config.gcs_port)):
        pass  # the port is free again


def test_port_taken_is_a_clear_error_naming_port_and_holder(tmp_path: Path) -> None:
    config = _fresh_config(tmp_path)
    with socket.create_server(("127.0.0.1", config.firestore_port)):
        with pytest.raises(ls.StackError) as err:
            ls.up(config)
    msg = str(err.value)
    assert f"port {config.firestore_port} (firestore)" in msg
    assert f"pid {os.getpid()}" in msg
    assert not any(s.running for s in ls.status(config))  # nothing half-started


def test_missing_pieces_are_clear_errors(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ls.StackError, match=r"function source .*nope\.py does not exist"):
        ls.up(_fresh_config(tmp_path, function_source=tmp_path / "nope.py"))
    with pytest.raises(ls.StackError, match=r"run scripts/setup\.sh"):
        empty = tmp_path / "node"
        empty.mkdir()
        (empty / "firestore.js").write_text("")
        ls.up(_fresh_config(tmp_path, node_dir=empty))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ls.StackError, match=r"node not found .*Node\.js"):
        ls.up(_fresh_config(tmp_path))
    with pytest.raises(ValueError, match=r"gcs_port .* 70000"):
        ls.StackConfig(gcs_port=70000)


def test_a_server_that_dies_at_start_up_is_reported_with_its_log_tail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise ImportError('the function cannot import its_dependency')\n")
    config = _fresh_config(tmp_path, function_source=broken, function_target="nope")
    with pytest.raises(ls.StackError) as err:
        ls.up(config)
    msg = str(err.value)
    assert "function exited during start-up" in msg and "function.log" in msg
    assert "the function cannot import its_dependency" in msg  # the log tail
    assert not any(s.running for s in ls.status(config))  # the others were stopped again


def test_clean_stack_empties_buckets_and_firestore(local_stack, bucket) -> None:
    from google.cloud import firestore

    bucket.blob("leftover.txt").upload_from_string(b"x")
    db = firestore.Client(project=local_stack.project)
    db.collection("models").document("m").set({"v": 1})
    ls.reset(local_stack)
    assert list(bucket.client.list_blobs(bucket.name)) == []
    assert not db.collection("models").document("m").get().exists
    assert ls.relay_stats(local_stack)["pending"] == 0


# ------------------------------------------------------------------------------------ delivery
def test_upload_reaches_the_function_as_a_cloudevent_within_2s(recorder, bucket) -> None:
    blob = bucket.blob("models/det/v1/manifest.json")
    blob.metadata = {"kind": "manifest"}
    started = time.time()
    blob.upload_from_string(b'{"hello": 1}', content_type="application/json")
    got = recorder.wait_for(lambda d: len(d) >= 1)
    latency = got[0]["received_at"] - started
    print(f"upload start -> function received the event: {latency * 1000:.1f} ms")
    assert latency < 2.0  # the delivery requirement (Eventarc-like), not a speed benchmark

    event = got[0]
    attrs, data = event["attributes"], event["data"]
    assert attrs["type"] == "google.cloud.storage.object.v1.finalized"
    assert attrs["source"] == "//storage.googleapis.com/projects/_/buckets/edgeship"
    assert attrs["subject"] == "objects/models/det/v1/manifest.json"
    assert attrs["specversion"] == "1.0" and attrs["id"] and attrs["time"]
    assert data["bucket"] == "edgeship"
    assert data["name"] == "models/det/v1/manifest.json"
    assert data["generation"] == str(blob.generation)
    assert data["md5Hash"] == blob.md5_hash and data["crc32c"] == blob.crc32c
    assert data["size"] == "12" and data["contentType"] == "application/json"
    assert data["metadata"] == {"kind": "manifest"}
    for key in ("metageneration", "timeCreated", "updated", "id", "selfLink"):
        assert data[key], key


def test_every_generation_arrives_at_least_once_in_order_per_object(recorder, bucket) -> None:
    written: dict[str, list[str]] = {"a.bin": [], "b/c.bin": []}
    for i in range(4):
        for name in written:
            blob = bucket.blob(name)
            # a resumable upload (chunked) for one object, a multipart one for the other
            if name == "a.bin":
                blob.chunk_size = 256 * 1024
                blob.upload_from_string(os.urandom(300_000 + i))
            else:
                blob.upload_from_string(f"{name} {i}".encode())
            written[name].append(str(blob.generation))
    got = recorder.wait_for(lambda d: all(
        set(gens) <= {e["data"]["generation"] for e in _by_name(d, n)}
        for n, gens in written.items()))
    for name, gens in written.items():
        delivered = [e["data"]["generation"] for e in _by_name(got, name)]
        first_seen = list(dict.fromkeys(delivered))
        assert first_seen == gens, f"{name}: delivered {delivered}, written {gens}"


def test_a_500_from_the_function_is_redelivered(recorder, bucket, local_stack) -> None:
    blob = bucket.blob("fail/once.txt")
    blob.upload_from_string(b"x")
    got = recorder.wait_for(lambda d: any(e["answered"] == 200 for e in d))
    tries = _by_name(got, "fail/once.txt")
    assert [e["answered"] for e in tries] == [500, 200]
    assert tries[0]["attributes"]["id"] == tries[1]["attributes"]["id"]  # same event, again
    assert tries[1]["data"]["generation"] == str(blob.generation)
    stats = ls.relay_stats(local_stack)
    assert stats["failures"] >= 1 and stats["delivered"] == 1


def test_relay_restart_loses_no_event(recorder, bucket, local_stack) -> None:
    state = ls._load_state(local_stack)["servers"]
    processes.stop_process(state["function"], "function")  # nothing can be delivered now
    names = [f"restart/{i}.txt" for i in range(3)]
    gens = {}
    for name in names:
        blob = bucket.blob(name)
        blob.upload_from_string(name.encode())
        gens[name] = str(blob.generation)
    assert recorder.deliveries() == []
    os.killpg(state["relay"]["pid"], signal.SIGKILL)  # crash, no clean shutdown
    os.waitpid(state["relay"]["pid"], 0)  # our child (the session started it): wait for its end
    result = ls.up(recorder.config)  # brings back the relay and the function, not the rest
    assert sorted(result["started"]) == ["function", "relay"]
    got = recorder.wait_for(lambda d: {e["data"]["name"] for e in d} >= set(names))
    for name in names:
        assert {e["data"]["generation"] for e in _by_name(got, name)} == {gens[name]}


# ----------------------------------------------------------------------------------- Firestore
def test_firestore_emulator_serves_transactions_and_listeners(clean_stack) -> None:
    from google.cloud import firestore

    db = firestore.Client(project=clean_stack.project)
    ref = db.collection("channels").document("stable")
    ref.set({"version": 1})
    seen: list[int] = []
    changed = threading.Event()

    def on_change(docs, changes, read_time) -> None:
        for doc in docs:
            seen.append(doc.to_dict()["version"])
            if seen[-1] == 2:
                changed.set()

    watch = ref.on_snapshot(on_change)
    try:

        @firestore.transactional
        def bump(transaction, ref) -> int:
            snap = ref.get(transaction=transaction)
            new = snap.get("version") + 1
            transaction.update(ref, {"version": new})
            return new

        assert bump(db.transaction(), ref) == 2
        assert changed.wait(15), f"the listener saw only {seen}"
    finally:
        watch.unsubscribe()
    assert ref.get().to_dict() == {"version": 2}
    assert seen[0] == 1 and seen[-1] == 2


def test_copy_rewrite_compose_finalize_but_metadata_patch_does_not(recorder, bucket) -> None:
    src = bucket.blob("parts/a.txt")
    src.upload_from_string(b"aaa")
    part_b = bucket.blob("parts/b.txt")
    part_b.upload_from_string(b"bbb")
    copied = bucket.copy_blob(src, bucket, "copies/a.txt")
    rewritten = bucket.blob("copies/rewritten.txt")
    token, _, _ = rewritten.rewrite(src)
    assert token is None
    composed = bucket.blob("copies/ab.txt")
    composed.compose([src, part_b])
    src.metadata = {"touched": "yes"}
    src.patch()  # a metadata update is not a finalize
    expected = {"parts/a.txt", "parts/b.txt", "copies/a.txt", "copies/rewritten.txt",
                "copies/ab.txt"}
    got = recorder.wait_for(lambda d: {e["data"]["name"] for e in d} >= expected)
    names = [e["data"]["name"] for e in got if e["answered"] == 200]
    assert sorted(names) == sorted(expected), names  # exactly one each, no event for the patch
    by_name = {e["data"]["name"]: e["data"] for e in got}
    assert by_name["copies/a.txt"]["generation"] == str(copied.generation)
    assert by_name["copies/ab.txt"]["size"] == "6"
