"""The train/qat CLI subcommands and KFP component interfaces (no training)."""
from __future__ import annotations

import pytest

from edgeship import cli


def test_cli_registers_train_and_qat():
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--data", "d", "--out", "o", "--epochs", "3", "--alpha", "0.5",
                              "--input-size", "128", "--batch-size", "8"])
    assert (args.epochs, args.alpha, args.input_size, args.batch_size) == (3, 0.5, 128, 8)
    args = parser.parse_args(["qat", "--model", "m", "--data", "d", "--out", "o", "--epochs", "2"])
    assert (args.model, args.epochs) == ("m", 2)


def test_cli_train_reports_a_bad_input_size(tiny_dataset, tmp_path, capsys):
    code = cli.main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "m"), "--input-size", "100"])
    assert code == 2
    assert "input_size [100, 100]" in capsys.readouterr().err


def test_cli_qat_reports_a_missing_model(tiny_dataset, tmp_path, capsys):
    code = cli.main(["qat", "--model", str(tmp_path / "nope"), "--data", str(tiny_dataset), "--out", str(tmp_path / "q")])
    assert code == 2
    assert "model directory not found" in capsys.readouterr().err


@pytest.mark.parametrize("module, name, inputs, outputs", [
    ("components.train.component", "train", {"dataset"}, {"model", "metrics"}),
    ("components.qat.component", "qat", {"float_model", "dataset"}, {"model", "metrics"}),
])
def test_components_compile_with_typed_artifacts(module, name, inputs, outputs, tmp_path):
    import importlib

    import yaml
    from kfp import compiler

    comp = getattr(importlib.import_module(module), name)
    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(comp, str(path))
    spec = yaml.safe_load(path.read_text())
    assert set(spec["root"]["inputDefinitions"]["artifacts"]) == inputs
    assert set(spec["root"]["outputDefinitions"]["artifacts"]) == outputs
    image = next(iter(spec["deploymentSpec"]["executors"].values()))["container"]["image"]
    assert image.startswith("us-docker.pkg.dev/edgeship/")
