"""The data step and `edgeship data import` on users' own formats (the readers themselves are
tested in tests/detection/test_sources_*.py)."""
import json
from types import SimpleNamespace

from components.data import core
from components.data.settings import DATA
from edgeship import cli
from edgeship.contracts import dataset as dataset_contract
from edgeship.detection.sources.importer import ImportOptions
from tests.detection import source_fixtures as fx


def test_import_options_defaults_are_the_data_settings():
    assert core.import_options() == ImportOptions(input_size=DATA.image_size)
    assert core.import_options(strict=True).strict is True


def test_component_imports_a_voc_folder_with_the_report_in_its_metadata(tmp_path, capsys):
    from components.data.component import data

    src = fx.write_voc(tmp_path / "voc", count=12, image_sets=False)
    out = SimpleNamespace(path=str(tmp_path / "ds"), metadata={}, uri="")
    data.python_func(dataset=out, data_uri=str(src), seed=3, resize="letterbox", image_size=96)
    info = dataset_contract.read_dataset_info(tmp_path / "ds")
    assert out.metadata["source"] == str(src)
    assert out.metadata["import"]["format"] == "voc"
    assert out.metadata["import"]["splits"]["seed"] == 3
    assert out.metadata["resize"] == {"policy": "letterbox", "input_size": [96, 96], "fill": 114}
    assert out.metadata["report"]["splits"]["train"]["images"] == info.splits["train"]["images"]
    assert out.metadata["fingerprint"] == info.fingerprint and info.image_size == [96, 96]
    json.dumps(out.metadata)  # KFP metadata must be JSON
    assert "data report (input 96x96, resize letterbox)" in capsys.readouterr().out


def test_materialize_still_copies_an_artifact_and_imports_everything_else(small_dataset, tmp_path):
    assert core.materialize(str(small_dataset), tmp_path / "copy").source is None
    src = fx.write_coco(tmp_path / "coco")
    assert core.materialize(str(src), tmp_path / "imported").source["format"] == "coco"


def test_same_source_same_seed_same_fingerprint_anywhere(tmp_path):
    src = fx.write_voc(tmp_path / "voc", count=12, image_sets=False)
    a = core.import_dataset(src, tmp_path / "a", core.import_options())
    b = core.import_dataset(src, tmp_path / "elsewhere/b", core.import_options())
    c = core.import_dataset(src, tmp_path / "c", core.import_options(seed=1))
    assert a.fingerprint == b.fingerprint
    assert a.source["splits"]["carved"] == c.source["splits"]["carved"]
    assert c.fingerprint != a.fingerprint  # other images carved


def test_cli_import_then_inspect(tmp_path, capsys):
    src = fx.write_coco(tmp_path / "coco")
    out, report = tmp_path / "art", tmp_path / "report.txt"
    assert cli.main(["data", "import", str(src), "--out", str(out), "--resize", "letterbox",
                     "--input-size", "128", "--report", str(report)]) == 0
    printed = capsys.readouterr().out
    info = dataset_contract.read_dataset_info(out)
    assert info.fingerprint in printed
    assert "classes (training id: name [your id]): 1: person [0], 2: car [3], 3: toothbrush [90]" \
        in printed
    assert "data report (input 128x128, resize letterbox)" in report.read_text()
    assert info.resize["policy"] == "letterbox" and info.image_size == [128, 128]
    assert cli.main(["data", "inspect", str(out), "--format", "tfrecord"]) == 0
    printed = capsys.readouterr().out
    assert "data report" in printed and '"format": "coco"' in printed


def test_cli_import_strict_refuses_with_an_error_not_a_traceback(tmp_path, capsys):
    src = fx.write_coco(tmp_path / "coco")
    fx.edit_json(src / "annotations/instances_val.json",
                 lambda d: d["annotations"][1].update(bbox=[60, 40, 20, 20]))
    assert cli.main(["data", "import", str(src), "--out", str(tmp_path / "art"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "edgeship data: error:" in err and "instances_val.json annotation" in err
    assert "refused under --strict" in err
    assert not (tmp_path / "art").exists()


def test_cli_import_tiny_boxes_are_reported(tmp_path, capsys):
    src = fx.write_voc(tmp_path / "voc", count=12, image_sets=False)
    assert cli.main(["data", "import", str(src), "--out", str(tmp_path / "art"),
                     "--input-size", "32", "--tiny-box-px", "12"]) == 0
    info = dataset_contract.read_dataset_info(tmp_path / "art")
    tiny = info.raw["report"]["tiny_boxes"]
    assert tiny["count"] > 0 and info.raw["report"]["warnings"]["by_kind"]["tiny_box"] == tiny["count"]
    assert "tiny boxes (< 12 px at the input)" in capsys.readouterr().out
