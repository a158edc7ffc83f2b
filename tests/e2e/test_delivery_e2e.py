"""End to end on the local stack: `edgeship publish` → relay (finalize CloudEvent) → register_model
(functions-framework) → Firestore → a listening client downloads, verifies (size, sha256, LiteRT)
and swaps; a second publish moves it again; `edgeship channel rollback` moves it back."""
from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.stack
WAIT = 30.0


def _cli(capsys, *argv: str) -> dict:
    from edgeship.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_publish_to_client_then_second_publish_then_rollback(clean_stack, artifacts, tmp_path, capsys,
                                                             monkeypatch):
    from edgeship.delivery.client import ModelClient

    monkeypatch.setenv("EDGESHIP_OPERATOR", "release-manager@example.com")
    vdir, edir = artifacts
    publish = ["publish", "--variants", str(vdir), "--variant", "fp32", "--report", str(edir),
               "--model", "detector", "--channel", "stable", "--bucket", "edgeship"]
    client = ModelClient("detector", "stable", tmp_path / "phone", app_version="3.0").start()
    try:
        first = _cli(capsys, *publish)["version"]
        held = client.wait_for(first, WAIT)
        assert held is not None, client.last_error
        assert os.readlink(tmp_path / "phone" / "current") == f"versions/{first}"

        second = _cli(capsys, *publish)["version"]
        assert second > first
        assert client.wait_for(second, WAIT) is not None, client.last_error
        assert os.readlink(tmp_path / "phone" / "current") == f"versions/{second}"
        # the function recorded the lineage: the second release's parent is the first
        from google.cloud import firestore

        db = firestore.Client(project=clean_stack.project)
        doc = db.document(f"models/detector/versions/{second}").get().to_dict()
        assert doc["manifest"]["parent_version"] == first

        state = _cli(capsys, "channel", "rollback", "--model", "detector", "--channel", "stable",
                     "--reason", "crash reports on 3.0")
        assert state["pinned_version"] == first
        assert state["history"][-1]["by"] == "release-manager@example.com"
        assert state["history"][-1]["reason"] == "crash reports on 3.0"
        assert client.wait_for(first, WAIT) is not None, client.last_error
        assert os.readlink(tmp_path / "phone" / "current") == f"versions/{first}"

        # while pinned, a new release does not move the channel; resume does
        third = _cli(capsys, *publish)["version"]
        from edgeship.localcloud import stack as local_stack

        assert local_stack.drain(clean_stack, timeout=WAIT)
        shown = _cli(capsys, "channel", "show", "--model", "detector", "--channel", "stable")
        assert shown["serving"] == first and shown["releases"][0]["version"] == third
        _cli(capsys, "channel", "resume", "--model", "detector", "--channel", "stable", "--reason", "fixed in 3.0.1")
        assert client.wait_for(third, WAIT) is not None, client.last_error
        events = [(h["event"], h["version"]) for h in client.history if h["event"] == "swapped"]
        assert events == [("swapped", first), ("swapped", second), ("swapped", first), ("swapped", third)]
    finally:
        client.stop()


def test_watch_cli_exits_once_it_holds_the_published_version(clean_stack, artifacts, tmp_path, capsys):
    from components.publish import core
    from edgeship.cli import main

    vdir, edir = artifacts
    result = core.publish(vdir, "fp32", bucket="edgeship", model="detector", report_dir=edir)
    code = main(["watch", "--model", "detector", "--channel", "stable", "--dir", str(tmp_path / "w"),
                 "--app-version", "1.0", "--until-version", result.version, "--timeout", str(WAIT)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"holding {result.version}" in out and "swapped" in out
