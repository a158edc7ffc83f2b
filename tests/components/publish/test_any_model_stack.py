"""`edgeship publish PATH` against the local stack: what lands in the bucket, version names claimed
once, every bad input refused with the bucket left empty, a different task under the same model
refused, and the registry views (models list / versions, unpublish as a channel action)."""
from __future__ import annotations

import json
import zipfile

import pytest

from components.publish import any_model
from edgeship.delivery import catalog, registry
from tests.components.publish import tiny_models

pytestmark = pytest.mark.stack
BUCKET = "edgeship"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("any-stack")
    labels = root / "labels.txt"
    labels.write_text("daisy\nrose\ntulip\n")
    return {"classifier": tiny_models.build_classifier(root / "flowers.tflite", classes=3),
            "segmenter": tiny_models.build_segmenter(root / "seg.tflite", classes=2),
            "labels": labels, "mlpackage": tiny_models.make_mlpackage(root, "flowers"), "root": root}


def _objects() -> list[str]:
    from edgeship.base import storage

    return sorted(b.name for b in storage.gcs_client().list_blobs(BUCKET))


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from edgeship.cli import main

    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_publish_path_uploads_the_files_and_claims_the_version_name(clean_stack, files, capsys, monkeypatch):
    code, out, err = _cli(capsys, "publish", str(files["classifier"]), str(files["mlpackage"]), "--model", "flowers",
                          "--task", "classifier", "--labels", str(files["labels"]), "--tags", "garden,v2",
                          "--version-name", "v1.0.0", "--display-name", "Flowers")
    assert code == 0, err
    result = json.loads(out)
    version = result["version"]
    assert result["task"] == "classifier" and result["version_name"] == "v1.0.0"
    prefix = f"models/flowers/{version}/"
    assert _objects() == sorted([prefix + n for n in ("model.tflite", "flowers.mlpackage.zip", "labels.txt",
                                                      "manifest.json")] + ["models/flowers/_names/v1.0.0"])
    # the same name again is refused before anything is uploaded, on any channel
    code, _, err = _cli(capsys, "publish", str(files["classifier"]), "--model", "flowers", "--task", "classifier",
                        "--version-name", "v1.0.0", "--channel", "beta")
    assert code == 2 and f"version name 'v1.0.0' of flowers is already taken by version {version}" in err
    assert len(_objects()) == 5
    # the claim itself is race-free: a publisher that skipped the check still loses
    monkeypatch.setattr(any_model, "check_version_name_free", lambda *a, **k: None)
    with pytest.raises(ValueError, match="version name 'v1.0.0' of flowers is already taken"):
        any_model.publish_model([files["classifier"]], bucket=BUCKET, model="flowers", task="classifier",
                                version_name="v1.0.0")
    assert len(_objects()) == 5


def _write(root, name: str, data: bytes):
    path = root / name
    path.write_bytes(data)
    return str(path)


def _bad_zip(root) -> str:
    path = root / "broken.mlpackage.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("broken.mlpackage/Data/model.mlmodel", b"x")
    return str(path)


BAD = [
    ("not-a-flatbuffer", lambda f: [_write(f["root"], "junk.tflite", b"GIF89a" * 50), "--task", "other"],
     "is not a TFLite model"),
    ("mlpackage-zip-without-manifest", lambda f: [str(f["classifier"]), _bad_zip(f["root"]), "--task", "classifier"],
     "has no broken.mlpackage/Manifest.json"),
    ("labels-count", lambda f: [str(f["classifier"]), "--task", "classifier", "--labels",
                                _write(f["root"], "five.txt", b"a\nb\nc\nd\ne\n")], "has 5 labels"),
    ("task-contradicted", lambda f: [str(f["segmenter"]), "--task", "classifier"], "--task classifier, but"),
    ("detector-outputs", lambda f: [str(f["classifier"]), "--task", "detector", "--labels", str(f["labels"])],
     "--task detector, but its outputs"),
]


@pytest.mark.parametrize("argv, message", [(a, m) for _, a, m in BAD], ids=[i for i, _, _ in BAD])
def test_bad_input_is_refused_and_nothing_is_uploaded(clean_stack, files, capsys, argv, message):
    code, _, err = _cli(capsys, "publish", *argv(files), "--model", "flowers")
    assert code == 2 and message in err, err
    assert _objects() == []


def test_another_task_under_the_same_model_is_refused(clean_stack, files):
    from edgeship.localcloud import stack as local_stack

    first = any_model.publish_model([files["classifier"]], bucket=BUCKET, model="flowers", task="classifier")
    assert local_stack.drain(clean_stack)
    with pytest.raises(ValueError, match=f"serves a classifier \\(version {first.version}\\); publishing a segmenter"):
        any_model.publish_model([files["segmenter"]], bucket=BUCKET, model="flowers", task="segmenter")
    second = any_model.publish_model([files["classifier"]], bucket=BUCKET, model="flowers", task="classifier")
    assert second.manifest["parent_version"] == first.version


def test_models_list_versions_and_unpublish(clean_stack, files, capsys):
    from edgeship.localcloud import stack as local_stack

    a = any_model.publish_model([files["classifier"]], bucket=BUCKET, model="flowers", task="classifier",
                                version_name="v1", tags=["garden"], display_name="Flowers")
    b = any_model.publish_model([files["segmenter"]], bucket=BUCKET, model="roads", task="segmenter")
    assert local_stack.drain(clean_stack)
    listed = {m["model"]: m for m in catalog.list_models(BUCKET)}
    assert set(listed) == {"flowers", "roads"}
    assert listed["flowers"]["task"] == "classifier" and listed["flowers"]["tags"] == ["garden"]
    assert listed["flowers"]["display_name"] == "Flowers" and listed["flowers"]["newest_version_name"] == "v1"
    assert listed["roads"]["channels"]["stable"] == {"serving": b.version, "published": True, "paused": False,
                                                      "pinned_version": None, "last_action": None}
    code, out, err = _cli(capsys, "models", "unpublish", "--model", "flowers", "--reason", "retired")
    assert code == 0, err
    state = json.loads(out)
    assert state["unpublished"] is True and state["paused"] is True and state["history"][-1]["action"] == "unpublish"
    code, out, _ = _cli(capsys, "models", "versions", "--model", "flowers")
    shown = json.loads(out)
    assert shown["channels"]["stable"]["serving"] is None and shown["channels"]["stable"]["published"] is False
    [row] = shown["versions"]
    assert row["version"] == a.version and row["version_name"] == "v1" and row["serving"] is False
    assert registry.current_release_manifest("flowers", "stable") is None
    with pytest.raises(ValueError, match="is unpublished: `edgeship channel resume`"):
        registry.channel_action("rollback", "flowers", "stable", reason="x")
    registry.channel_action("resume", "flowers", "stable", reason="back")
    assert registry.show_channel("flowers", "stable")["serving"] == a.version
    code, out, _ = _cli(capsys, "models", "list")
    assert code == 0 and {m["model"] for m in json.loads(out)} == {"flowers", "roads"}
    assert _objects()  # files stay: unpublish never deletes


def test_pipeline_publish_takes_a_version_name_too(clean_stack, variants, capsys):
    vdir, edir = variants
    code, out, err = _cli(capsys, "publish", "--variants", str(vdir), "--variant", "fp32", "--report", str(edir),
                          "--model", "detector", "--version-name", "nightly-42")
    assert code == 0, err
    result = json.loads(out)
    assert result["version_name"] == "nightly-42" and result["task"] == "detector"
    assert "models/detector/_names/nightly-42" in _objects()
    code, _, err = _cli(capsys, "publish", "--variants", str(vdir), "--variant", "fp32", "--model", "detector",
                        "--version-name", "nightly-42")
    assert code == 2 and "already taken" in err
    code, _, err = _cli(capsys, "publish", "--variants", str(vdir), "--variant", "fp32", "--model", "detector",
                        "--task", "classifier")
    assert code == 2 and "--task: only with PATH" in err
