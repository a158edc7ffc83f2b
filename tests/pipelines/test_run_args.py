"""`edgeship run` refuses bad input before it starts anything (stack, client, pipeline)."""
import sys
import types

import pytest

from edgeship import cli


@pytest.fixture
def no_stack(monkeypatch):
    started = []
    fake = types.ModuleType("edgeship.localcloud.stack")

    class StackConfig:
        def __init__(self, *a, **k):
            started.append("config")

    fake.StackConfig = StackConfig
    fake.up = lambda *a, **k: started.append("up")
    monkeypatch.setitem(sys.modules, "edgeship.localcloud.stack", fake)
    return started


@pytest.mark.parametrize("argv,message", [
    (["--budget", "-0.5"], "accuracy_budget must be >= 0"),
    (["--budget", "half"], "accuracy_budget must be a number"),
    (["--data-uri", "/no/such/dir"], "data_uri '/no/such/dir' does not exist"),
    (["--param", "colour=red"], "unknown pipeline parameter 'colour'"),
    (["--epochs", "2.5"], "'epochs' must be an integer"),
    (["--qat-epochs", "-1"], "'qat_epochs' must be >= 0"),
    (["--learning-rate", "0"], "'learning_rate' must be > 0"),
    (["--seed", "-1"], "'seed' must be >= 0"),
    (["--qat-objective", "teacher"], "'qat_objective' must be one of both, distill, labels, got 'teacher'"),
    (["--early-stop", "val_acc"], "'early_stop' must be one of val_loss, val_map, none, got 'val_acc'"),
    (["--auto-quantize", "--param", "autoquant_max_candidates=0"], "'autoquant_max_candidates' must be >= 1"),
    (["--auto-quantize", "--param", "autoquant_max_seconds=-5"], "'autoquant_max_seconds' must be >= 0"),
    (["--auto-quantize", "--param", "autoquant_max_candidates=many"], "'autoquant_max_candidates' must be an integer"),
])
def test_run_refuses_bad_input_before_starting(no_stack, capsys, argv, message):
    rc = cli.main(["run", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert no_stack == []


def test_check_parameters_types(tmp_path):
    from edgeship.cli.main_job import check_parameters

    values = check_parameters({"data_uri": str(tmp_path), "epochs": "3", "qat_epochs": "1",
                               "force_promote": True, "accuracy_budget": "none", "auto_quantize": "true",
                               "autoquant_max_seconds": "600"})
    assert values == {"data_uri": str(tmp_path), "epochs": 3, "qat_epochs": 1,
                      "force_promote": True, "accuracy_budget": "none", "auto_quantize": True,
                      "autoquant_max_seconds": 600.0}


def test_auto_quantize_flag_sets_the_parameter():
    from edgeship.cli.commands.pipeline import _collect_params

    args = cli.build_parser().parse_args(["run", "--auto-quantize", "--budget", "0.3"])
    assert _collect_params(args) == {"auto_quantize": True, "accuracy_budget": "0.3"}


def test_seed_and_qat_objective_flags_set_the_parameters():
    from edgeship.cli.commands.pipeline import _collect_params

    args = cli.build_parser().parse_args(["run", "--seed", "2", "--qat-objective", "distill",
                                          "--early-stop", "val_map"])
    assert _collect_params(args) == {"seed": "2", "qat_objective": "distill", "early_stop": "val_map"}
