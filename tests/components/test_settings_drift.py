"""One settings dataclass per step (components/<step>/settings.py): the KFP component signature,
the step's core function, the CLI flags and the pipeline parameters must all carry its defaults.

KFP lightweight components are shipped as source, so their signatures hold literals; the other
places read the dataclasses. This test fails as soon as any of them drifts.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest

from components.autoquant import component as autoquant_component
from components.autoquant import core as autoquant_core
from components.autoquant.settings import AUTOQUANT
from components.data import component as data_component
from components.data.settings import DATA
from components.evaluate import component as evaluate_component
from components.evaluate import core as evaluate_core
from components.evaluate.settings import EVALUATE
from components.publish import core as publish_core
from components.publish.settings import PUBLISH
from components.qat import component as qat_component
from components.qat import core as qat_core
from components.qat.settings import PIPELINE_QAT, QAT
from components.quantize import component as quantize_component
from components.quantize import core as quantize_core
from components.quantize.settings import QUANTIZE
from components.select import component as select_component
from components.select import core as select_core
from components.select.settings import SELECT
from components.train import component as train_component
from components.train import core as train_core
from components.train.settings import PIPELINE_TRAIN, TRAIN
from edgeship import cli
from edgeship.contracts.budget import parse_budget
from edgeship.contracts.decision import GateConfig
from pipelines.edgeship_pipeline import edgeship_pipeline


def defaults(func) -> dict:
    func = getattr(func, "python_func", None) or getattr(func, "pipeline_func", None) or func
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty}


def subparser(*path: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def flag_defaults(*path: str) -> dict:
    return {a.dest: a.default for a in subparser(*path)._actions if a.dest != "help"}


def fields(settings) -> dict:
    return dataclasses.asdict(settings)


@pytest.mark.parametrize("component, settings, renames", [
    (data_component.data, DATA, {}),
    (train_component.train, TRAIN, {}),
    (qat_component.qat, QAT, {"patience": None}),
    (evaluate_component.evaluate, EVALUATE, {"latency_warmup": None, "selective_layers": None}),
    (autoquant_component.autoquant, AUTOQUANT,
     {"step": None, "max_float_layers": None, "calibration_images": None, "latency_runs": None}),
])
def test_component_signatures_carry_the_settings(component, settings, renames):
    got = defaults(component)
    for name, value in fields(settings).items():
        key = renames.get(name, name)
        if key is None:
            continue  # not a component input (the component uses the core's default)
        assert got[key] == value, f"{component.name}: {key}={got[key]!r}, settings say {value!r}"


def test_quantize_component_takes_every_scheme_by_default():
    got = defaults(quantize_component.quantize)
    assert got["schemes"] == QUANTIZE.schemes_text
    assert got["num_calibration"] == QUANTIZE.num_calibration and got["coreml"] == QUANTIZE.coreml
    assert "full_int8_pt" in QUANTIZE.schemes


@pytest.mark.parametrize("func, settings, names", [
    (train_core.train, TRAIN, ("epochs", "batch_size", "alpha", "learning_rate", "seed", "patience",
                               "anchors", "backbone_weights", "frozen_epochs", "init_from", "head",
                               "deterministic", "min_steps", "early_stop")),
    (qat_core.qat, QAT, ("epochs", "batch_size", "learning_rate", "seed", "patience", "min_steps", "freeze_bn",
                         "freeze_ranges", "objective", "deterministic")),
    (evaluate_core.evaluate, EVALUATE, ("split", "latency_runs", "latency_warmup", "bootstrap_resamples",
                                        "confidence", "latency_blocks", "diagnose")),
    (evaluate_core.evaluate_examples, EVALUATE, ("latency_runs", "latency_warmup", "bootstrap_resamples",
                                                 "confidence", "latency_blocks")),
    (select_core.select_step, SELECT, ("min_map", "min_map50")),
    (autoquant_core.autoquant, AUTOQUANT, ("max_candidates", "seed", "step", "max_float_layers", "latency_runs")),
    (publish_core.publish, PUBLISH, ("channel", "min_app_version")),
])
def test_core_functions_read_the_settings(func, settings, names):
    got = defaults(func)
    for name in names:
        assert got[name] == getattr(settings, name), f"{func.__name__}({name}=...)"
    assert defaults(quantize_core.quantize)["num_calibration"] == QUANTIZE.num_calibration


@pytest.mark.parametrize("path, settings, flags", [
    (("train",), TRAIN, {"epochs": "epochs", "batch_size": "batch_size", "alpha": "alpha",
                         "learning_rate": "learning_rate", "patience": "patience", "seed": "seed",
                         "anchors": "anchors", "backbone_weights": "backbone_weights",
                         "frozen_epochs": "frozen_epochs", "init_from": "init_from", "head": "head",
                         "deterministic": "deterministic", "min_steps": "min_steps",
                         "early_stop": "early_stop"}),
    (("qat",), QAT, {"epochs": "epochs", "batch_size": "batch_size", "learning_rate": "learning_rate",
                     "seed": "seed", "patience": "patience", "min_steps": "min_steps", "freeze_bn": "freeze_bn",
                     "freeze_ranges": "freeze_ranges", "objective": "objective",
                     "deterministic": "deterministic"}),
    (("evaluate",), EVALUATE, {"split": "split", "latency_runs": "latency_runs",
                               "latency_warmup": "latency_warmup", "diagnose": "diagnose"}),
    (("autoquant",), AUTOQUANT, {"max_candidates": "max_candidates", "step": "step",
                                 "max_float_layers": "max_float_layers", "seed": "seed",
                                 "calibration_images": "calibration_images", "latency_runs": "latency_runs"}),
    (("quantize",), QUANTIZE, {"num_calibration": "num_calibration"}),
    (("data", "generate"), DATA, {"seed": "seed", "train_images": "train", "val_images": "val",
                                  "calibration_images": "calibration", "image_size": "image_size"}),
    (("data", "import"), DATA, {"seed": "seed", "image_size": "input_size", "source_format": "format",
                                "val_fraction": "val_fraction",
                                "calibration_fraction": "calibration_fraction", "strict": "strict",
                                "resize": "resize", "max_image_side": "max_side",
                                "tiny_box_px": "tiny_box_px"}),
    (("publish",), PUBLISH, {"channel": "channel", "bucket": "bucket", "min_app_version": "min_app_version"}),
])
def test_cli_flags_read_the_settings(path, settings, flags):
    got = flag_defaults(*path)
    for field, dest in flags.items():
        assert got[dest] == getattr(settings, field), f"edgeship {' '.join(path)} --{dest}"


def test_data_import_options_are_the_data_settings():
    """The library's ImportOptions defaults (what a direct caller gets) are the step's settings."""
    from edgeship.detection.sources.importer import ImportOptions

    options = ImportOptions()
    assert options.input_size == DATA.image_size and options.format == DATA.source_format
    for name in ("val_fraction", "calibration_fraction", "seed", "strict", "resize",
                 "max_image_side", "tiny_box_px"):
        assert getattr(options, name) == getattr(DATA, name), name
    resize = next(a for a in subparser("data", "import")._actions if a.dest == "resize")
    from edgeship.contracts.dataset import RESIZE_POLICIES

    assert tuple(resize.choices) == RESIZE_POLICIES


def test_cli_scheme_choices_are_the_converters():
    action = next(a for a in subparser("quantize")._actions if a.dest == "schemes")
    assert tuple(action.choices) == QUANTIZE.schemes


def test_pipeline_parameters_read_the_settings():
    got = defaults(edgeship_pipeline)
    assert got["data_uri"] == DATA.data_uri and got["input_size"] == DATA.image_size
    assert got["epochs"] == PIPELINE_TRAIN.epochs and got["learning_rate"] == PIPELINE_TRAIN.learning_rate
    for name in ("alpha", "patience", "anchors", "backbone_weights", "frozen_epochs", "init_from", "head",
                 "early_stop"):
        assert got[name] == getattr(PIPELINE_TRAIN, name), name
    assert got["train_min_steps"] == PIPELINE_TRAIN.min_steps and got["seed"] == PIPELINE_TRAIN.seed
    assert got["qat_objective"] == PIPELINE_QAT.objective
    assert got["qat_epochs"] == PIPELINE_QAT.epochs
    for name in ("accuracy_budget", "latency_budget_ms", "tolerance", "force_promote", "min_map", "min_map50"):
        assert got[name] == getattr(SELECT, name), name
    for name in ("model_name", "channel", "bucket", "min_app_version"):
        assert got[name] == getattr(PUBLISH, name), name
    assert got["autoquant_max_candidates"] == AUTOQUANT.max_candidates
    assert got["autoquant_max_seconds"] == AUTOQUANT.max_seconds


def test_gate_config_defaults_are_the_select_settings():
    config = GateConfig()
    assert config.accuracy_budget == parse_budget(SELECT.accuracy_budget)
    assert config.latency_budget_ms == SELECT.latency_budget_ms
    assert config.tolerance == SELECT.tolerance and config.force_promote == SELECT.force_promote
    assert config.min_map == SELECT.min_map and config.min_map50 == SELECT.min_map50


def test_select_component_floor_defaults_are_the_settings():
    """The gate's new inputs have defaults (older pipelines that do not pass them keep working)."""
    got = defaults(select_component.select)
    assert got["min_map"] == SELECT.min_map and got["min_map50"] == SELECT.min_map50


def test_run_flags_reach_the_floor_parameters():
    from edgeship.cli.commands.pipeline import _collect_params

    args = subparser("run").parse_args(["--min-map50", "0.3", "--min-map", "0.2"])
    assert _collect_params(args) == {"min_map50": "0.3", "min_map": "0.2"}
    with pytest.raises(ValueError, match="--min-map50 must be an mAP in 0..1"):
        _collect_params(subparser("run").parse_args(["--min-map50", "30"]))


def test_a_drifted_literal_is_caught(monkeypatch):
    """The check itself can fail: a component whose literal differs from its settings."""
    def fake(epochs: int = TRAIN.epochs + 1):
        return epochs

    assert defaults(fake)["epochs"] != TRAIN.epochs
