"""The KFP component's typed interface and the `edgeship evaluate` command."""
import yaml

from edgeship import cli


def test_component_interface(tmp_path):
    from kfp import compiler

    from components.evaluate.component import evaluate

    path = tmp_path / "evaluate.yaml"
    compiler.Compiler().compile(evaluate, str(path))
    spec = yaml.safe_load(path.read_text())
    inputs = spec["root"]["inputDefinitions"]
    outputs = spec["root"]["outputDefinitions"]["artifacts"]
    assert inputs["artifacts"]["dataset"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert inputs["artifacts"]["float_model"]["artifactType"]["schemaTitle"] == "system.Model"
    assert inputs["artifacts"]["variants"]["artifactType"]["schemaTitle"] == "system.Artifact"
    assert inputs["parameters"]["latency_runs"]["defaultValue"] == 50
    assert outputs["evaluation"]["artifactType"]["schemaTitle"] == "system.Artifact"
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs["report_html"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert outputs["report_md"]["artifactType"]["schemaTitle"] == "system.Markdown"


def test_cli_registers_evaluate_and_names_a_missing_variants_dir(tmp_path, capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["evaluate", "--variants", "v", "--data", "d", "--out", "o"])
    assert args.latency_runs == 50 and args.float_model is None
    missing = tmp_path / "no-variants"
    code = cli.main(["evaluate", "--variants", str(missing), "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2
    assert f"{missing}/variants.json" in capsys.readouterr().err


def test_cli_rejects_zero_latency_runs(tmp_path, capsys):
    code = cli.main(["evaluate", "--variants", str(tmp_path), "--data", str(tmp_path), "--out",
                     str(tmp_path / "o"), "--latency-runs", "0"])
    assert code == 2 and "--latency-runs must be >= 1, got 0" in capsys.readouterr().err


def test_cli_champion_of_is_bucket_model_channel(tmp_path, capsys):
    from edgeship.cli.commands.evaluate import _champion_of

    assert _champion_of("gs://edgeship/raccoon/stable") == {"bucket": "edgeship", "model_name": "raccoon",
                                                             "channel": "stable"}
    assert _champion_of(None) == {}
    code = cli.main(["evaluate", "--variants", str(tmp_path), "--data", str(tmp_path), "--out",
                     str(tmp_path / "o"), "--champion-of", "edgeship/raccoon"])
    assert code == 2 and "--champion-of must be BUCKET/MODEL/CHANNEL, got 'edgeship/raccoon'" in capsys.readouterr().err
