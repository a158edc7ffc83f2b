"""`edgeship import-firebase` (components/publish/firebase_import.py): reading a Firebase ML export
(REST and snake_case field names, file resolution, recorded size and hash), every bad export named
before anything is uploaded, and an import on the local stack (unpublished models imported
unpublished, a second import skipping what is there)."""
from __future__ import annotations

import json

import pytest

from components.publish import firebase_import
from tests.components.publish import tiny_models


@pytest.fixture(scope="module")
def tflites(tmp_path_factory):
    root = tmp_path_factory.mktemp("fb-models")
    return {"classifier": tiny_models.build_classifier(root / "c.tflite", classes=3),
            "other": tiny_models.build_classifier(root / "o.tflite", classes=5, seed=4)}


@pytest.fixture()
def export(tmp_path, tflites):
    return tiny_models.firebase_export(tmp_path / "export", [
        {"id": "11111111", "display_name": "Flower_Classifier", "tags": ["garden", "v2"], "published": True,
         "tflite": tflites["classifier"]},
        {"id": "22222222", "display_name": "draft-model", "tags": ["beta"], "published": False,
         "tflite": tflites["other"]}])


def test_export_is_read_with_names_tags_state_and_files(export):
    models = firebase_import.read_export(*export)
    assert [(m.model, m.display_name, m.tags, m.published, m.model_id, m.version_name, m.task) for m in models] == [
        ("flower_classifier", "Flower_Classifier", ["garden", "v2"], True, "11111111", "firebase-11111111", "other"),
        ("draft-model", "draft-model", ["beta"], False, "22222222", "firebase-22222222", "other")]
    assert models[0].file.name == "11111111.tflite"


def test_snake_case_entries_overrides_and_a_bare_list_are_read(export, tmp_path):
    path, files = export
    (files / "renamed.tflite").write_bytes((files / "11111111.tflite").read_bytes())
    path.write_text(json.dumps([{"model_id": "11111111", "display_name": "Flower_Classifier", "published": True,
                                 "tags": ["x"], "file": "renamed.tflite", "edgeship_model": "flowers",
                                 "task": "classifier"}]))
    [m] = firebase_import.read_export(path, files)
    assert (m.model, m.task, m.file.name, m.published) == ("flowers", "classifier", "renamed.tflite", True)


def _edit(export, change):
    path, files = export
    data = json.loads(path.read_text())
    change(data["models"], files)
    path.write_text(json.dumps(data))
    return path, files


BAD_EXPORTS = [
    ("missing-file", lambda ms, files: (files / "22222222.tflite").unlink(),
     FileNotFoundError, r"model 1 \('draft-model'\): the export lists this model but its file is missing"),
    ("size", lambda ms, files: ms[0]["tfliteModel"].update(sizeBytes="17"), ValueError, "Firebase recorded 17"),
    ("hash", lambda ms, files: ms[0].update(modelHash="0" * 64), ValueError, "has sha256 .* Firebase recorded 0000"),
    ("bad-name", lambda ms, files: ms[0].update(displayName="_private"), ValueError,
     "edgeship model name .*'_private' is not allowed"),
    ("same-name", lambda ms, files: ms[1].update(displayName="flower_classifier"), ValueError,
     r"several models would be published as \['flower_classifier'\]"),
    ("outside", lambda ms, files: ms[0].update(file="../models.json"), ValueError, "is outside"),
    ("no-display-name", lambda ms, files: ms[0].pop("displayName"), ValueError, "no displayName"),
    ("bad-tag", lambda ms, files: ms[0].update(tags=["with space"]), ValueError, "tag 'with space'"),
    ("bad-task", lambda ms, files: ms[0].update(task="regressor"), ValueError, "task 'regressor'"),
]


@pytest.mark.parametrize("change, error, message", [b[1:] for b in BAD_EXPORTS], ids=[b[0] for b in BAD_EXPORTS])
def test_bad_export_is_named(export, change, error, message):
    with pytest.raises(error, match=message):
        firebase_import.read_export(*_edit(export, change))


def test_export_that_is_not_a_model_list_is_named(tmp_path):
    (tmp_path / "files").mkdir()
    for body in ("not json", "{}", "[]", '{"models": [1]}'):
        (tmp_path / "m.json").write_text(body)
        with pytest.raises(ValueError, match="m.json"):
            firebase_import.read_export(tmp_path / "m.json", tmp_path / "files")
    with pytest.raises(FileNotFoundError, match="Firebase export not found"):
        firebase_import.read_export(tmp_path / "nope.json", tmp_path / "files")


def test_a_task_the_model_contradicts_stops_the_whole_import(export):
    from edgeship.delivery.model_files import ModelFileError

    with pytest.raises(ModelFileError, match="--task segmenter, but"):
        firebase_import.import_firebase(*export, bucket="edgeship", task="segmenter", check_only=True)


@pytest.mark.stack
def test_missing_file_uploads_nothing(clean_stack, export, capsys):
    from edgeship.base import storage
    from edgeship.cli import main

    path, files = _edit(export, lambda ms, f: (f / "22222222.tflite").unlink())
    assert main(["import-firebase", str(path), "--files", str(files)]) == 2
    assert "its file is missing" in capsys.readouterr().err
    assert list(storage.gcs_client().list_blobs("edgeship")) == []


@pytest.mark.stack
def test_import_publishes_unpublishes_and_skips_what_is_there(clean_stack, export):
    from edgeship.delivery import registry
    from edgeship.localcloud import stack as local_stack

    first = firebase_import.import_firebase(*export, bucket="edgeship", channel="stable")
    assert [(s["model"], s["status"]) for s in first] == [("flower_classifier", "published"),
                                                          ("draft-model", "imported, unpublished")]
    assert local_stack.drain(clean_stack)
    assert registry.show_channel("flower_classifier", "stable")["serving"] == first[0]["version"]
    draft = registry.show_channel("draft-model", "stable")
    assert draft["unpublished"] and draft["serving"] is None and draft["releases"][0]["version"] == first[1]["version"]
    again = firebase_import.import_firebase(*export, bucket="edgeship", channel="stable")
    assert [(s["status"], s["version"]) for s in again] == [("already imported", first[0]["version"]),
                                                            ("already imported", first[1]["version"])]


@pytest.mark.stack
def test_an_unpublished_model_never_unpublishes_a_served_channel(clean_stack, export, tflites):
    from components.publish import any_model
    from edgeship.base import storage
    from edgeship.localcloud import stack as local_stack

    served = any_model.publish_model([tflites["other"]], bucket="edgeship", model="draft-model", task="other")
    assert local_stack.drain(clean_stack)
    before = sorted(b.name for b in storage.gcs_client().list_blobs("edgeship"))
    with pytest.raises(ValueError, match=f"serves version {served.version}: importing it would unpublish"):
        firebase_import.import_firebase(*export, bucket="edgeship")
    assert sorted(b.name for b in storage.gcs_client().list_blobs("edgeship")) == before  # nothing uploaded
