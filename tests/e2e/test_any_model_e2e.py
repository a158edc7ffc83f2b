"""End to end on the local stack for models the pipeline did not make:

- a classifier .tflite built here, published with `edgeship publish PATH --task classifier`,
  registered by the real function (relay → functions-framework), delivered to a listening client
  that verifies, smoke-runs and swaps it; unpublished and resumed with the CLI;
- a Firebase ML export (models JSON + files; two models, one unpublished) imported with
  `edgeship import-firebase`: the published one reaches its client, the unpublished one never does.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.components.publish import tiny_models

pytestmark = pytest.mark.stack
WAIT = 30.0


def _cli(capsys, *argv: str):
    from edgeship.cli import main

    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _run(path, image: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], image)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def test_classifier_published_with_the_cli_reaches_a_listening_client(clean_stack, tmp_path, capsys):
    from edgeship.delivery.client import ModelClient
    from edgeship.localcloud import stack as local_stack

    model = tiny_models.build_classifier(tmp_path / "flowers.tflite", classes=3)
    labels = tmp_path / "labels.txt"
    labels.write_text("daisy\nrose\ntulip\n")
    publish = ["publish", str(model), "--model", "flowers", "--task", "classifier", "--labels", str(labels),
               "--tags", "garden", "--display-name", "Flower classifier", "--bucket", "edgeship"]
    client = ModelClient("flowers", "stable", tmp_path / "phone", app_version="1.0").start()
    try:
        first = _cli(capsys, *publish, "--version-name", "v1.0.0")
        held = client.wait_for(first["version"], WAIT)
        assert held is not None, client.last_error
        assert (held.task, held.version_name) == ("classifier", "v1.0.0")
        assert held.release["labels"] == ["daisy", "rose", "tulip"] and held.release["tags"] == ["garden"]
        assert os.readlink(tmp_path / "phone" / "current") == f"versions/{first['version']}"
        assert (tmp_path / "phone" / "current" / "model.tflite").read_bytes() == model.read_bytes()
        probs = _run(held.path, np.full((1, 8, 8, 3), 0.5, np.float32))
        assert probs.shape == (1, 3) and abs(float(probs.sum()) - 1.0) < 1e-5
        assert any("version name v1.0.0" in h["reason"] for h in client.history if h["event"] == "swapped")

        versions = _cli(capsys, "models", "versions", "--model", "flowers")
        assert versions["versions"][0]["serving"] and versions["versions"][0]["version_name"] == "v1.0.0"

        # unpublish: recorded, the client keeps what it holds and installs nothing new
        _cli(capsys, "models", "unpublish", "--model", "flowers", "--reason", "retiring v1")
        assert client.wait_until(lambda c: c.status == "unpublished", WAIT), client.history
        second = _cli(capsys, *publish, "--version-name", "v2.0.0")
        assert local_stack.drain(clean_stack, timeout=WAIT)
        assert not client.wait_until(lambda c: c.current_version == second["version"], 2.0)
        assert client.current_version == first["version"]
        # resume publishes the channel again: the client moves to the newest release
        _cli(capsys, "channel", "resume", "--model", "flowers", "--reason", "v2 fixed")
        assert client.wait_for(second["version"], WAIT) is not None, client.last_error
        assert second["parent_version"] is None  # published while unpublished: nothing was served
    finally:
        client.stop()
        local_stack.drain(clean_stack, timeout=WAIT)


def test_firebase_export_is_imported_and_the_published_model_delivered(clean_stack, tmp_path, capsys):
    from edgeship.delivery.client import ModelClient
    from edgeship.localcloud import stack as local_stack

    export, files = tiny_models.firebase_export(tmp_path / "export", [
        {"id": "11111111", "display_name": "Flower_Classifier", "tags": ["garden", "v2"], "published": True,
         "tflite": tiny_models.build_classifier(tmp_path / "a.tflite", classes=3)},
        {"id": "22222222", "display_name": "draft_model", "tags": ["beta"], "published": False,
         "tflite": tiny_models.build_classifier(tmp_path / "b.tflite", classes=4, seed=9)}])
    published = ModelClient("flower_classifier", "stable", tmp_path / "phone-a").start()
    draft = ModelClient("draft_model", "stable", tmp_path / "phone-b").start()
    try:
        summary = _cli(capsys, "import-firebase", str(export), "--files", str(files), "--task", "classifier")
        assert [(s["model"], s["status"]) for s in summary] == [("flower_classifier", "published"),
                                                                ("draft_model", "imported, unpublished")]
        held = published.wait_for(summary[0]["version"], WAIT)
        assert held is not None, published.last_error
        assert held.release["display_name"] == "Flower_Classifier" and held.release["tags"] == ["garden", "v2"]
        assert held.version_name == "firebase-11111111"
        assert held.path.read_bytes() == (files / "11111111.tflite").read_bytes()

        assert local_stack.drain(clean_stack, timeout=WAIT)
        assert draft.wait_until(lambda c: c.status == "unpublished", WAIT), draft.history
        assert draft.current is None and not (tmp_path / "phone-b" / "current").exists()

        listed = {m["model"]: m for m in _cli(capsys, "models", "list")}
        assert listed["flower_classifier"]["channels"]["stable"]["published"] is True
        assert listed["draft_model"]["channels"]["stable"] == {
            "serving": None, "published": False, "paused": True, "pinned_version": None,
            "last_action": "unpublish"}
        assert listed["draft_model"]["display_name"] == "draft_model" and listed["draft_model"]["tags"] == ["beta"]
    finally:
        published.stop()
        draft.stop()
        local_stack.drain(clean_stack, timeout=WAIT)
