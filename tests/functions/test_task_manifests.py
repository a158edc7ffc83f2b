"""The function and manifests of other tasks than detection (schema: ``task``, tensor-list outputs,
``version_name``, ``tags``, ``display_name``): a classifier published with any_model registers,
its release record carries what clients show, and manifests that break the task rules are refused
with nothing written."""
from __future__ import annotations

import json

import pytest

from components.publish import any_model
from tests.components.publish import tiny_models

pytestmark = pytest.mark.stack

BUCKET = "edgeship"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp("fn-classifier")
    model = tiny_models.build_classifier(root / "flowers.tflite", classes=3)
    labels = root / "labels.txt"
    labels.write_text("daisy\nrose\ntulip\n")
    return model, labels


def _deliver(fn, gcs, name):
    from tests.support.delivery import event_for_object

    fn.register_model(event_for_object(gcs, BUCKET, name))


def _docs(servers):
    from tests.support.delivery import firestore_documents

    return firestore_documents(servers.control_port)


def test_classifier_registers_with_its_task_and_names(fn, stores, classifier, monkeypatch):
    db, gcs, _ = stores
    monkeypatch.setattr(any_model, "current_release_manifest", lambda *a, **k: None)
    model, labels = classifier
    res = any_model.publish_model([model], bucket=BUCKET, model="flowers", task="classifier",
                                  labels_path=labels, tags=["garden"], display_name="Flowers",
                                  version_name="v1.0.0", storage_client=gcs)
    _deliver(fn, gcs, f"models/flowers/{res.version}/manifest.json")
    release = db.document(f"models/flowers/releases/stable-{res.version}").get().to_dict()
    assert release["task"] == "classifier" and release["version_name"] == "v1.0.0"
    assert release["tags"] == ["garden"] and release["display_name"] == "Flowers"
    assert release["outputs"] == res.manifest["outputs"] and release["labels"] == ["daisy", "rose", "tulip"]
    version = db.document(f"models/flowers/versions/{res.version}").get().to_dict()
    assert version["manifest"] == res.manifest


@pytest.mark.parametrize("mutate, field", [
    (lambda m: m.update(outputs={"boxes": {"index": 0, "name": "x"}}), "outputs"),   # detector map on a classifier
    (lambda m: m.pop("task"), "outputs"),                                            # no task = detector: needs boxes...
    (lambda m: m.update(task="regressor"), "task"),
    (lambda m: m.update(version_name="../x"), "version_name"),
    (lambda m: m.update(tags=["a b"]), "tags/0"),
    (lambda m: m["outputs"][0].update(dtype="float128"), "outputs/0/dtype"),
    (lambda m: m.update(display_name=""), "display_name"),
])
def test_manifests_breaking_the_task_rules_are_refused(fn, stores, classifier, servers, capsys, mutate, field,
                                                       tmp_path, monkeypatch):
    _, gcs, bucket = stores
    monkeypatch.setattr(any_model, "current_release_manifest", lambda *a, **k: None)
    model, labels = classifier
    manifest, uploads = any_model.build_model_manifest(
        [model], task="classifier", model="flowers", channel="stable", version="20261124t120000000000z-abcdef",
        created_at="2026-11-24T12:00:00.000000Z", work_dir=tmp_path, labels_path=labels)
    for up in uploads:
        bucket.blob(f"models/flowers/{manifest['version']}/{up.name}").upload_from_filename(str(up.local))
    mutate(manifest)
    name = f"models/flowers/{manifest['version']}/manifest.json"
    bucket.blob(name).upload_from_string(json.dumps(manifest))
    capsys.readouterr()
    _deliver(fn, gcs, name)
    assert _docs(servers) == {}
    [rec] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"decision"' in line]
    assert rec["decision"] == "rejected" and rec["field"].startswith(field), rec
