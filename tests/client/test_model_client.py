"""The reference client on the local stack: publish → relay → function → Firestore → client."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from components.publish import core as publish_core
from edgeship.delivery import registry
from edgeship.delivery.client import ModelClient
from edgeship.localcloud import stack as local_stack

pytestmark = pytest.mark.stack

WAIT = 30.0


def _publish(make_variants, *, model_bytes=None, min_app_version="1.0.0", model="detector"):
    vdir, edir = make_variants(model_bytes)
    return publish_core.publish(vdir, "fp32", bucket="edgeship", model=model, channel="stable",
                                report_dir=edir, min_app_version=min_app_version)


def test_client_downloads_verifies_and_swaps_atomically(clean_stack, make_variants, tmp_path):
    client = ModelClient("detector", "stable", tmp_path / "cache").start()
    try:
        first = _publish(make_variants)
        held = client.wait_for(first.version, WAIT)
        assert held is not None, client.last_error
        current = tmp_path / "cache" / "current"
        assert current.is_symlink() and os.readlink(current) == f"versions/{first.version}"
        body = (current / "model.tflite").read_bytes()
        assert hashlib.sha256(body).hexdigest() == held.sha256 == first.manifest["files"][0]["sha256"]
        second = _publish(make_variants)
        assert client.wait_for(second.version, WAIT) is not None, client.last_error
        assert os.readlink(current) == f"versions/{second.version}"
        # the last good model is kept beside the current one
        assert (tmp_path / "cache" / "versions" / first.version / "model.tflite").is_file()
    finally:
        client.stop()


def test_model_that_litert_cannot_load_is_refused_and_the_old_one_kept(clean_stack, make_variants, tmp_path):
    client = ModelClient("detector", "stable", tmp_path / "cache").start()
    try:
        good = _publish(make_variants)
        assert client.wait_for(good.version, WAIT) is not None, client.last_error
        bad = _publish(make_variants, model_bytes=b"not a flatbuffer" * 64)
        assert client.wait_until(lambda c: c.last_error and bad.version in c.last_error, WAIT), client.history
        assert "LiteRT" in client.last_error
        assert client.current_version == good.version
        assert os.readlink(tmp_path / "cache" / "current") == f"versions/{good.version}"
        assert not (tmp_path / "cache" / "versions" / bad.version).exists()
    finally:
        client.stop()


def test_release_whose_object_does_not_match_its_sha256_is_refused(clean_stack, make_variants, tmp_path):
    """A tampered release record (or a corrupted object): the download fails verification."""
    from google.cloud import firestore

    db = firestore.Client(project=clean_stack.project)
    client = ModelClient("detector", "stable", tmp_path / "cache", download_attempts=2).start()
    try:
        good = _publish(make_variants)
        assert client.wait_for(good.version, WAIT) is not None, client.last_error
        releases = db.collection("models").document("detector").collection("releases")
        record = releases.document(f"stable-{good.version}").get().to_dict()
        fake_version = "29990101t000000000000z-ffffff"
        record.update(version=fake_version,
                      model_file=dict(record["model_file"], sha256="0" * 64))
        releases.document(f"stable-{fake_version}").create(record)
        assert client.wait_until(lambda c: c.last_error and "sha256" in c.last_error, WAIT), client.history
        assert client.current_version == good.version
    finally:
        client.stop()


def test_release_needing_a_newer_app_is_skipped(clean_stack, make_variants, tmp_path):
    client = ModelClient("detector", "stable", tmp_path / "cache", app_version="1.4").start()
    try:
        ok = _publish(make_variants, min_app_version="1.2")
        assert client.wait_for(ok.version, WAIT) is not None, client.last_error
        too_new = _publish(make_variants, min_app_version="2.0")
        assert client.wait_until(lambda c: any(h["event"] == "skip" and h["version"] == too_new.version
                                               for h in c.history), WAIT)
        assert client.current_version == ok.version
    finally:
        client.stop()
    # a fresh client on an old app finds the newest release it can run, not nothing
    fresh = ModelClient("detector", "stable", tmp_path / "cache2", app_version="1.4").start()
    try:
        assert fresh.wait_for(ok.version, WAIT) is not None, fresh.last_error
    finally:
        fresh.stop()


def test_pause_holds_the_model_and_resume_moves_on(clean_stack, make_variants, tmp_path):
    client = ModelClient("detector", "stable", tmp_path / "cache").start()
    try:
        first = _publish(make_variants)
        assert client.wait_for(first.version, WAIT) is not None
        registry.channel_action("pause", "detector", "stable", reason="bad reports from the field",
                                    who="oncall@example.com")
        assert client.wait_until(lambda c: c.status == "paused", WAIT)
        second = _publish(make_variants)
        local_stack.drain(clean_stack)
        assert client.wait_for(second.version, 1.0) is None
        assert client.current_version == first.version
        state = registry.channel_action("resume", "detector", "stable", reason="fixed",
                                            who="oncall@example.com")
        assert [h["action"] for h in state["history"]] == ["pause", "resume"]
        assert client.wait_for(second.version, WAIT) is not None
    finally:
        client.stop()


def test_restarted_client_serves_its_cached_model_at_once(clean_stack, make_variants, tmp_path):
    client = ModelClient("detector", "stable", tmp_path / "cache").start()
    first = _publish(make_variants)
    assert client.wait_for(first.version, WAIT) is not None
    client.stop()
    again = ModelClient("detector", "stable", tmp_path / "cache", db=object(), storage_client=object())
    again._load_cached()  # no server needed to serve what is on disk
    assert again.current_version == first.version
    assert Path(again.current.path).read_bytes() == (tmp_path / "cache/current/model.tflite").read_bytes()


def test_empty_cache_client_falls_back_to_the_newest_release_that_installs(clean_stack, make_variants,
                                                                            tmp_path):
    """The channel's newest release is broken and the client holds nothing: it installs the
    newest older release that does install, and its history says why."""
    good = _publish(make_variants)
    also_broken = _publish(make_variants, model_bytes=b"no flatbuffer here" * 64)
    broken = _publish(make_variants, model_bytes=b"not a flatbuffer" * 64)
    assert good.version < also_broken.version < broken.version
    assert local_stack.drain(clean_stack, timeout=WAIT)  # all three registered before it starts
    client = ModelClient("detector", "stable", tmp_path / "cache", max_install_attempts=2).start()
    try:
        held = client.wait_for(good.version, WAIT)
        assert held is not None, client.history
        events = [(h["event"], h["version"]) for h in client.history]
        assert ("fallback", good.version) in events and ("fallback", also_broken.version) in events
        assert ("error", broken.version) in events and ("error", also_broken.version) in events
        assert events.index(("fallback", good.version)) > events.index(("error", also_broken.version))
        assert os.readlink(tmp_path / "cache" / "current") == f"versions/{good.version}"
        assert not (tmp_path / "cache" / "versions" / broken.version).exists()
        # a good newer release still moves the client forward
        newer = _publish(make_variants)
        assert client.wait_for(newer.version, WAIT) is not None, client.history
    finally:
        client.stop()


def test_download_conditions_hold_the_download_until_the_network_allows_it(clean_stack, make_variants,
                                                                            tmp_path):
    from edgeship.delivery.cache import DownloadConditions, NetworkState

    network = {"now": NetworkState(cellular=True, expensive=True)}
    seen: list[tuple[str, int, int]] = []
    client = ModelClient("detector", "stable", tmp_path / "cache",
                         conditions=DownloadConditions(allow_cellular=False),
                         network=lambda: network["now"], conditions_recheck_s=0.2,
                         progress=lambda v, done, total: seen.append((v, done, total))).start()
    try:
        first = _publish(make_variants)
        assert client.wait_until(lambda c: c.status == "waiting" and "cellular" in c.status_detail, WAIT)
        assert client.current is None and seen == []
        network["now"] = NetworkState()  # on Wi-Fi now
        held = client.wait_for(first.version, WAIT)
        assert held is not None, client.history
        assert seen and seen[-1] == (first.version, held.size, held.size)
        assert all(done <= total for _, done, total in seen)
    finally:
        client.stop()


def test_local_models_are_listed_and_only_old_ones_deleted(clean_stack, make_variants, tmp_path):
    from edgeship.delivery import cache

    client = ModelClient("detector", "stable", tmp_path / "cache").start()
    try:
        first = _publish(make_variants)
        assert client.wait_for(first.version, WAIT) is not None
        second = _publish(make_variants)
        assert client.wait_for(second.version, WAIT) is not None
    finally:
        client.stop()
    models = cache.list_local(tmp_path / "cache")
    assert [(m.version, m.current) for m in models] == [(second.version, True), (first.version, False)]
    with pytest.raises(ValueError, match="current model"):
        cache.delete_local(tmp_path / "cache", second.version)
    with pytest.raises(ValueError, match="not installed"):
        cache.delete_local(tmp_path / "cache", "../outside")
    cache.delete_local(tmp_path / "cache", first.version)
    assert [m.version for m in cache.list_local(tmp_path / "cache")] == [second.version]
