"""The publish step: manifest building (schema-validated, bad input named) and create-only upload
to Cloud Storage (fake-gcs-server of the local stack), manifest last."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from components.publish import core
from edgeship.contracts import manifest as mf
from edgeship.delivery import registry


def _build(variants, **kw):
    vdir, edir = variants
    args = dict(model="detector", channel="stable", version=mf.new_version(),
                created_at="2026-11-24T12:00:00.000000Z", report_dir=edir)
    args.update(kw)
    return core.build_manifest(vdir, "fp32", **args)


def test_manifest_has_every_field_and_matches_the_schema(variants):
    manifest, uploads = _build(variants, min_app_version="2.1", pipeline_run_id="run-7",
                               parent_version="20260101t000000000000z-abcdef")
    mf.validate(manifest)
    assert [u.name for u in uploads] == ["model.tflite", "labels.txt", "report.json"]
    model = manifest["files"][0]
    assert model["format"] == "tflite" and model["quantization"] == "fp32"
    assert model["sha256"] == hashlib.sha256(uploads[0].local.read_bytes()).hexdigest()
    assert manifest["labels"] == ["circle", "square"]
    assert manifest["metrics"] == {"map": 0.5, "map50": 0.7, "delta_map_vs_float": -0.1,
                                   "size_bytes": model["size"], "latency_ms": 1.5}
    assert manifest["dataset_fingerprint"] == "sha256:" + "ab" * 32
    assert manifest["outputs"]["count"] == {"index": 2, "name": "StatefulPartitionedCall:2"}
    assert manifest["parent_version"] == "20260101t000000000000z-abcdef"


@pytest.mark.parametrize("policy, published", [(None, "stretch"), ("stretch", "stretch"),
                                               ("letterbox", "letterbox")])
def test_manifest_tells_apps_the_resize_policy(variants, policy, published):
    """The model's resize policy (variants.json input.resize) reaches the manifest, so an app fits
    its photos the way the model was trained and evaluated; none recorded (older artifacts) = stretch."""
    vdir, _ = variants
    doc = json.loads((vdir / "variants.json").read_text())
    doc["variants"][0]["input"].pop("resize", None)
    if policy is not None:
        doc["variants"][0]["input"]["resize"] = policy
    (vdir / "variants.json").write_text(json.dumps(doc))
    manifest, _ = _build(variants)
    assert manifest["input"]["resize"] == published
    mf.validate(manifest)
    manifest["input"]["resize"] = "crop"
    with pytest.raises(ValueError, match="crop"):
        mf.validate(manifest, source="a hand-edited manifest")


@pytest.mark.parametrize("kw, message", [
    ({"model": "../etc"}, "model name '../etc'"),
    ({"model": "Détecteur"}, "model name"),
    ({"channel": "stable/../x"}, "channel"),
    ({"version": "latest"}, "version 'latest'"),
    ({"min_app_version": "two"}, "min_app_version 'two'"),
])
def test_bad_parameters_are_named(variants, kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        _build(variants, **kw)


def test_unknown_variant_and_missing_files_are_named(variants):
    vdir, edir = variants
    with pytest.raises(ValueError, match="variant 'int4' is not in .*variants.json"):
        core.build_manifest(vdir, "int4", model="m", channel="stable", version=mf.new_version(),
                            created_at="2026-11-24T12:00:00Z")
    (vdir / "fp32.tflite").unlink()
    with pytest.raises(FileNotFoundError, match="fp32.tflite"):
        _build(variants)


def test_report_without_the_variant_is_named(variants):
    vdir, edir = variants
    (edir / "report.json").write_text(json.dumps({"variants": {"full_int8": {}}}))
    with pytest.raises(ValueError, match="variant 'fp32' has no row in .*report.json"):
        _build(variants)


def test_version_ids_sort_in_publish_order_and_are_unique():
    t0 = dt.datetime(2026, 11, 24, 12, 0, 0, 999999, dt.timezone.utc)
    ids = [mf.new_version(t0 + dt.timedelta(microseconds=i)) for i in range(0, 3000, 7)]
    assert ids == sorted(ids)
    same = {mf.new_version(t0) for _ in range(200)}
    assert len(same) == 200  # same microsecond, distinct ids
    assert all(mf.VERSION_RE.match(v) and mf.NAME_RE.match(v) for v in same)
    assert mf.version_time(ids[0]) == t0


@pytest.mark.stack
def test_publish_is_create_only_and_writes_the_manifest_last(clean_stack, variants):
    from edgeship.base import storage

    vdir, edir = variants
    result = core.publish(vdir, "fp32", bucket="edgeship", model="detector", report_dir=edir,
                          parent_version=None)
    gcs = storage.gcs_client()
    blobs = {b.name: b for b in gcs.list_blobs("edgeship", prefix=f"models/detector/{result.version}/")}
    assert set(blobs) == {f"models/detector/{result.version}/{n}"
                          for n in ("model.tflite", "labels.txt", "report.json", "manifest.json")}
    manifest_blob = blobs[f"models/detector/{result.version}/manifest.json"]
    assert all(manifest_blob.generation >= b.generation for b in blobs.values())  # written last
    for entry in result.manifest["files"]:
        blob = blobs[f"models/detector/{result.version}/{entry['path']}"]
        assert blob.metadata["sha256"] == entry["sha256"] and blob.size == entry["size"]
    with pytest.raises(ValueError, match=f"version {result.version} of detector already exists"):
        core.publish(vdir, "fp32", bucket="edgeship", model="detector", report_dir=edir,
                     parent_version=None, version=result.version)


@pytest.mark.stack
def test_failed_publish_leaves_no_manifest_and_cleans_up(clean_stack, variants, monkeypatch):
    from google.cloud.storage import Blob

    from edgeship.base import storage

    vdir, edir = variants
    real = Blob.upload_from_filename

    def flaky(self, filename, *a, **kw):
        if self.name.endswith("report.json"):
            raise ConnectionError("network dropped")
        return real(self, filename, *a, **kw)

    monkeypatch.setattr(Blob, "upload_from_filename", flaky)
    version = mf.new_version()
    with pytest.raises(ConnectionError):
        core.publish(vdir, "fp32", bucket="edgeship", model="detector", report_dir=edir,
                     parent_version=None, version=version)
    left = [b.name for b in storage.gcs_client().list_blobs("edgeship", prefix=f"models/detector/{version}/")]
    assert left == []


@pytest.mark.stack
def test_parent_version_is_the_channel_current_one(clean_stack, variants):
    from edgeship.localcloud import stack as local_stack

    vdir, edir = variants
    first = core.publish(vdir, "fp32", bucket="edgeship", model="detector", report_dir=edir)
    assert first.manifest["parent_version"] is None
    assert local_stack.drain(clean_stack)
    second = core.publish(vdir, "fp32", bucket="edgeship", model="detector", report_dir=edir)
    assert second.manifest["parent_version"] == first.version
    assert local_stack.drain(clean_stack)
    assert registry.current_release_manifest("detector", "stable")["version"] == second.version


@pytest.mark.stack
def test_current_release_manifest_falls_back_to_the_bucket_without_firestore(clean_stack, variants,
                                                                             monkeypatch):
    vdir, edir = variants
    first = core.publish(vdir, "fp32", bucket="edgeship", model="detector", report_dir=edir)
    monkeypatch.setattr(registry, "firestore_client", lambda: (_ for _ in ()).throw(
        ConnectionError("registry unreachable")))
    assert registry.current_release_manifest("detector", "stable", bucket="edgeship") == first.manifest
    assert registry.current_release_manifest("detector", "beta", bucket="edgeship") is None
    with pytest.raises(ConnectionError):
        registry.current_release_manifest("detector", "stable")


@pytest.mark.stack
def test_rollback_rules(clean_stack, variants):
    from edgeship.localcloud import stack as local_stack

    vdir, edir = variants
    with pytest.raises(ValueError, match="no release to roll back from"):
        registry.channel_action("rollback", "detector", "stable", reason="x")
    a = core.publish(vdir, "fp32", bucket="edgeship", model="detector", report_dir=edir)
    b = core.publish(vdir, "fp32", bucket="edgeship", model="detector", report_dir=edir)
    assert local_stack.drain(clean_stack)
    with pytest.raises(ValueError, match="--reason is required"):
        registry.channel_action("rollback", "detector", "stable", reason="  ")
    with pytest.raises(ValueError, match="--to 20990101t000000000000z-000000: no release"):
        registry.channel_action("rollback", "detector", "stable", reason="x", to="20990101t000000000000z-000000")
    state = registry.channel_action("rollback", "detector", "stable", reason="regression", who="me@host")
    assert state["pinned_version"] == a.version and state["paused"] is False
    assert state["history"] == [{"action": "rollback", "version": a.version, "by": "me@host",
                                 "at": state["updated_at"], "reason": "regression"}]
    with pytest.raises(ValueError, match=f"nothing older than {a.version}"):
        registry.channel_action("rollback", "detector", "stable", reason="again")
    shown = registry.show_channel("detector", "stable")
    assert shown["serving"] == a.version and [r["version"] for r in shown["releases"]] == [b.version, a.version]


def test_cli_names_bad_input_before_touching_any_server(tmp_path, capsys, monkeypatch):
    from edgeship.cli import main

    # no stack: any remote call would fail differently (or hang); the input check comes first
    for key in ("STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"):
        monkeypatch.setenv(key, "127.0.0.1:9")
    code = main(["publish", "--variants", str(tmp_path / "nope"), "--variant", "fp32",
                 "--model", "detector"])
    assert code == 2
    assert f"{tmp_path / 'nope' / 'variants.json'}" in capsys.readouterr().err
    code = main(["channel", "rollback", "--model", "../x", "--reason", "r"])
    assert code == 2 and "model name '../x'" in capsys.readouterr().err
