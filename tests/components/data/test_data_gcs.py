"""Reading from gs:// on the local fake-gcs-server (a real server, started by the stack fixture)."""
import numpy as np
import pytest

from components.data import core
from edgeship.base import storage
from edgeship.contracts import dataset as dataset_contract
from edgeship.detection import dataset as dataset_reader

pytestmark = pytest.mark.stack


def test_gcs_round_trip_reads_the_same_examples(small_dataset, clean_stack):
    uri = "gs://edgeship/datasets/small"
    storage.upload_dir(small_dataset, uri)
    assert dataset_contract.read_dataset_info(uri).fingerprint == dataset_contract.read_dataset_info(small_dataset).fingerprint
    for fmt in ("coco", "tfrecord"):
        remote = dataset_reader.load_split(uri, "val", fmt)
        local = dataset_reader.load_split(small_dataset, "val", fmt)
        assert [e.image_id for e in remote] == [e.image_id for e in local]
        for a, b in zip(remote, local):
            np.testing.assert_array_equal(a.image, b.image)
            np.testing.assert_allclose(a.boxes, b.boxes)


def test_unreadable_gcs_path_names_the_uri(clean_stack):
    with pytest.raises(FileNotFoundError, match=r"gs://edgeship/no/such/dataset/dataset\.json"):
        dataset_reader.load_split("gs://edgeship/no/such/dataset", "val")


def test_materialize_copies_a_users_gcs_dataset(small_dataset, clean_stack, tmp_path):
    uri = "gs://edgeship/datasets/users"
    storage.upload_dir(small_dataset, uri)
    info = core.materialize(uri, tmp_path / "artifact")
    assert info.fingerprint == dataset_contract.read_dataset_info(small_dataset).fingerprint
    assert (tmp_path / "artifact/tfrecord/train-00000-of-00001.tfrecord").exists()


def test_cli_upload_then_inspect_from_the_bucket(small_dataset, clean_stack, capsys):
    from edgeship import cli

    uri = "gs://edgeship/datasets/cli"
    assert cli.main(["data", "upload", str(small_dataset), uri]) == 0
    assert uri in capsys.readouterr().out
    assert cli.main(["data", "inspect", uri, "--format", "tfrecord"]) == 0
    assert dataset_contract.read_dataset_info(small_dataset).fingerprint in capsys.readouterr().out
    # create-only: a second upload over the same prefix is refused, not silently merged
    assert cli.main(["data", "upload", str(small_dataset), uri]) == 2
    assert f"{uri} already holds some of these files" in capsys.readouterr().err
    assert cli.main(["data", "upload", str(small_dataset), uri, "--overwrite"]) == 0
