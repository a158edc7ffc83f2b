"""Importing from and to gs://: on the local fake-gcs-server (stack tests), and the order of the
upload (dataset.json last, a failed upload removed) with the storage calls recorded."""
import pytest

from components.data import core
from edgeship.base import storage
from edgeship.contracts import dataset as dataset_contract
from edgeship.detection.sources import writer
from tests.detection import source_fixtures as fx


@pytest.mark.stack
def test_import_from_gcs_is_the_same_dataset_as_from_disk(clean_stack, tmp_path):
    src = fx.write_voc(tmp_path / "voc", count=12)
    storage.upload_dir(src, "gs://edgeship/sources/voc")
    local = core.import_dataset(src, tmp_path / "local", core.import_options())
    remote = core.materialize("gs://edgeship/sources/voc", tmp_path / "remote")
    assert remote.fingerprint == local.fingerprint
    assert remote.source["uri"] == "gs://edgeship/sources/voc"


@pytest.mark.stack
def test_import_to_gcs_then_read_it_back(clean_stack, tmp_path):
    src = fx.write_coco(tmp_path / "coco")
    uri = "gs://edgeship/datasets/imported"
    info = core.import_dataset(src, uri, core.import_options())
    assert dataset_contract.read_dataset_info(uri).fingerprint == info.fingerprint
    assert info.classes[2] == {"id": 3, "name": "toothbrush", "source_id": 90}
    with pytest.raises(ValueError, match=r"already holds .* imports to gs:// are create-only"):
        core.import_dataset(src, uri, core.import_options())


@pytest.mark.stack
def test_unreadable_gcs_sources_are_named(clean_stack, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing under the gs:// source gs://edgeship/none"):
        core.import_dataset("gs://edgeship/none", tmp_path / "a", core.import_options())
    with pytest.raises(FileNotFoundError, match=r"gs://no-such-bucket-here/photos"):
        core.import_dataset("gs://no-such-bucket-here/photos", tmp_path / "b", core.import_options())
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_gcs_upload_puts_dataset_json_last_and_removes_a_failed_upload(tmp_path, monkeypatch):
    src = fx.write_voc(tmp_path / "voc", count=12)
    calls, deleted = [], []

    def upload_dir(local_dir, uri, *, overwrite=False):
        names = sorted(p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*") if p.is_file())
        calls.append(names)
        return [f"{uri}/{n}" for n in names]

    monkeypatch.setattr(storage, "list_files", lambda uri: [])
    monkeypatch.setattr(storage, "upload_dir", upload_dir)
    monkeypatch.setattr(dataset_contract, "read_dataset_info", lambda uri: uri)
    from edgeship.detection.sources import importer

    monkeypatch.setattr(importer, "read_dataset_info", lambda uri: uri)
    importer.import_dataset(src, "gs://b/ds", core.import_options())
    assert len(calls) == 2 and calls[1] == ["dataset.json"]
    assert "dataset.json" not in calls[0] and "tfrecord/train-00000-of-00001.tfrecord" in calls[0]

    def failing(local_dir, uri, *, overwrite=False):
        raise OSError("connection reset")

    monkeypatch.setattr(storage, "upload_dir", failing)
    monkeypatch.setattr(writer, "_delete_prefix", lambda uri: deleted.append(uri))
    with pytest.raises(OSError, match="connection reset"):
        importer.import_dataset(src, "gs://b/ds2", core.import_options())
    assert deleted == ["gs://b/ds2"]
