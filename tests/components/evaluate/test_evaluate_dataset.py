"""`evaluate()` and `edgeship evaluate` on a tiny dataset written by the data step, with stand-in variants."""
import json
import shutil

import pytest

from components.evaluate import core
from edgeship import cli

data = pytest.importorskip("components.data.core")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    info = data.generate_dataset(out, seed=1, train=1, val=5, calibration=1, image_size=48)
    return out, info


@pytest.fixture(scope="module")
def matching_variants(tiny_dataset, tmp_path_factory, standin_variants):
    _, info = tiny_dataset
    root = tmp_path_factory.mktemp("variants5")
    for f in standin_variants.iterdir():
        shutil.copy(f, root / f.name)
    (root / "labels.txt").write_text("\n".join(info.class_names) + "\n")
    return root


def test_evaluate_on_the_data_steps_val_split(tiny_dataset, matching_variants, tmp_path):
    uri, info = tiny_dataset
    report = core.evaluate(matching_variants, str(uri), tmp_path / "eval", latency_runs=3,
                           latency_warmup=1, show_progress=False)
    assert report.images == 5 and report.dataset_fingerprint == info.fingerprint
    doc = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert set(doc["variants"]) == {"fp32", "full_int8"}
    assert set(doc["variants"]["fp32"]["per_class_ap"]) == set(info.class_names)
    for name in ("report.md", "report.html", "tradeoff.png"):
        assert (tmp_path / "eval" / name).is_file()


def test_label_map_that_disagrees_with_the_data_is_an_error(tiny_dataset, standin_variants, tmp_path):
    uri, _ = tiny_dataset  # standin_variants' labels.txt has 3 classes, the data 5
    with pytest.raises(ValueError, match="disagrees with the dataset's classes"):
        core.evaluate(standin_variants, str(uri), tmp_path / "eval", show_progress=False)


def test_missing_split_is_an_error(tiny_dataset, matching_variants, tmp_path):
    uri, _ = tiny_dataset
    with pytest.raises((ValueError, FileNotFoundError), match="test"):
        core.evaluate(matching_variants, str(uri), tmp_path / "eval", split="test", show_progress=False)


def test_cli_evaluate(tiny_dataset, matching_variants, tmp_path, capsys):
    uri, _ = tiny_dataset
    code = cli.main(["evaluate", "--variants", str(matching_variants), "--data", str(uri), "--out",
                     str(tmp_path / "cli"), "--latency-runs", "2", "--only", "full_int8", "--slices", "dark"])
    assert code == 0
    doc = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert list(doc["variants"]) == ["full_int8"]
    assert list(doc["variants"]["full_int8"]["robustness"]) == ["dark"]
    assert "report.html" in capsys.readouterr().out
