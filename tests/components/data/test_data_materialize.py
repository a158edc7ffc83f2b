"""The user's own data: validated and brought into the artifact (core.materialize), the KFP
component body (python_func with artifact stand-ins), and the CLI."""
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from components.data import core
from edgeship import cli
from edgeship.contracts import dataset as dataset_contract
from edgeship.detection import dataset as dataset_reader


def _coco_only(src, dst):
    """A user's dataset as people bring it: COCO JSON + JPEGs, nothing else."""
    shutil.copytree(src / "coco", dst / "coco")
    return dst


def test_coco_only_dataset_is_imported_with_metadata_and_tfrecords(small_dataset, tmp_path, SMALL):
    user = _coco_only(small_dataset, tmp_path / "user")
    info = core.materialize(str(user), tmp_path / "artifact")
    art = tmp_path / "artifact"
    assert info.class_names == list(core.CLASSES)
    assert (art / "labels.txt").read_text().split() == list(core.CLASSES)
    assert info.splits["val"]["images"] == SMALL["val"]
    assert info.source["format"] == "coco" and info.source["splits"]["carved"] == {}
    assert info.source["mapping"] == {str(i): i for i in range(1, len(core.CLASSES) + 1)}
    assert info.fingerprint == core.fingerprint_dir(art)
    coco = dataset_reader.load_split(art, "train", "coco")
    tfr = dataset_reader.load_split(art, "train", "tfrecord")
    gen = dataset_reader.load_split(small_dataset, "train", "coco")
    for a, b, g in zip(coco, tfr, gen):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.labels, g.labels)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-6)
        np.testing.assert_allclose(a.boxes, g.boxes, atol=1e-6)
    # the generator's JPEGs are kept byte for byte (nothing to re-encode)
    assert (art / "coco/images/val/000003.jpg").read_bytes() == \
        (small_dataset / "coco/images/val/000003.jpg").read_bytes()


def test_complete_dataset_keeps_its_fingerprint(small_dataset, tmp_path):
    info = core.materialize(str(small_dataset), tmp_path / "artifact")
    assert info.fingerprint == dataset_contract.read_dataset_info(small_dataset).fingerprint
    assert "derived" not in info.raw and info.source is None


def test_files_changed_after_dataset_json_are_refused(dataset_copy, tmp_path):
    a, b = dataset_copy / "coco/images/val/000000.jpg", dataset_copy / "coco/images/val/000001.jpg"
    a.write_bytes(b.read_bytes())  # still a valid JPEG, but not the one fingerprinted
    with pytest.raises(ValueError, match=r"says fingerprint sha256:\w+ but its files hash to sha256:\w+"):
        core.materialize(str(dataset_copy), tmp_path / "artifact")


def test_missing_calibration_split_is_carved_from_train(small_dataset, tmp_path, SMALL):
    user = _coco_only(small_dataset, tmp_path / "user")
    (user / "coco/annotations/calibration.json").unlink()
    info = core.materialize(str(user), tmp_path / "artifact")
    carved = info.source["splits"]["carved"]
    assert list(carved) == ["calibration"] and carved["calibration"]["from"] == "train"
    n = carved["calibration"]["images"]
    assert n == round(0.1 * SMALL["train"])
    assert info.splits["train"]["images"] == SMALL["train"] - n
    assert info.splits["val"]["images"] == SMALL["val"]


def test_missing_source_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset source .*nowhere does not exist"):
        core.materialize(str(tmp_path / "nowhere"), tmp_path / "artifact")


def test_component_generates_with_metadata(tmp_path):
    from components.data.component import data

    out = SimpleNamespace(path=str(tmp_path / "ds"), metadata={}, uri="")
    data.python_func(dataset=out, data_uri="", seed=5, train_images=6, val_images=5,
                     calibration_images=5, image_size=64)
    info = dataset_contract.read_dataset_info(tmp_path / "ds")
    assert out.metadata["fingerprint"] == info.fingerprint
    assert out.metadata["splits"]["train"]["images"] == 6
    assert set(out.metadata["splits"]["val"]["per_class"]) == set(core.CLASSES)


def test_component_takes_the_users_data(small_dataset, tmp_path):
    from components.data.component import data

    user = _coco_only(small_dataset, tmp_path / "user")
    out = SimpleNamespace(path=str(tmp_path / "ds"), metadata={}, uri="")
    data.python_func(dataset=out, data_uri=str(user))
    assert out.metadata["source"] == str(user)
    assert out.metadata["fingerprint"] == core.fingerprint_dir(tmp_path / "ds")


def test_cli_generate_and_inspect(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["data", "generate", "--out", str(out), "--seed", "2", "--train", "5", "--val", "5",
                     "--calibration", "5", "--image-size", "64"]) == 0
    printed = capsys.readouterr().out
    fingerprint = dataset_contract.read_dataset_info(out).fingerprint
    assert str(out) in printed and fingerprint in printed
    assert cli.main(["data", "inspect", str(out), "--format", "tfrecord"]) == 0
    assert fingerprint in capsys.readouterr().out


def test_cli_inspect_bad_data_is_an_error_not_a_traceback(dataset_copy, capsys):
    (dataset_copy / "coco/images/train/000004.jpg").write_bytes(b"garbage")
    assert cli.main(["data", "inspect", str(dataset_copy)]) == 2
    assert "000004.jpg: cannot decode image" in capsys.readouterr().err


def test_cli_inspect_draws_a_grid(small_dataset, tmp_path, capsys):
    from PIL import Image

    png = tmp_path / "grid.png"
    assert cli.main(["data", "inspect", str(small_dataset), "--grid", str(png), "--split", "val"]) == 0
    assert str(png) in capsys.readouterr().out
    with Image.open(png) as img:
        assert img.size == (3 * 64 * 2, 3 * 64 * 2)  # 8 val images -> 3x3 tiles at 2x


def test_cli_generator_knobs(tmp_path, capsys):
    out = tmp_path / "knobs"
    assert cli.main(["data", "generate", "--out", str(out), "--train", "5", "--val", "5", "--calibration", "5",
                     "--image-size", "64", "--set", "max_objects=1", "--set", "min_size=30"]) == 0
    info = dataset_contract.read_dataset_info(out)
    assert info.raw["generator"]["max_objects"] == 1 and info.raw["generator"]["min_size"] == 30.0
    assert all(info.splits[s]["objects"] == 5 for s in dataset_contract.SPLITS)
    assert cli.main(["data", "generate", "--out", str(out), "--set", "colour=red"]) == 2
    assert "--set 'colour=red': expected KNOB=VALUE" in capsys.readouterr().err
    assert cli.main(["data", "generate", "--out", str(out), "--set", "min_size=200"]) == 2
    assert "min_size" in capsys.readouterr().err
