"""The QAT fine-tune's rules without TensorFlow: the schedule from the data, the settings in the
core, the KFP component and the CLI."""
from __future__ import annotations

import argparse
import inspect

import pytest

from components.qat import component as qat_component
from components.qat import core
from components.qat.settings import PIPELINE_QAT, QAT
from edgeship import cli


def test_a_small_dataset_gets_more_epochs_to_reach_min_steps():
    s = core.fine_tune_schedule(151, 16, epochs=3, min_steps=200, patience=3)
    assert s["steps_per_epoch"] == 9 and s["epochs"] == 23 and s["total_steps"] == 207
    assert s["epochs_requested"] == 3 and s["patience_requested"] == 3 and s["passes_per_epoch"] == 1
    assert s["patience"] == 23                         # 3 x (23 / 3), rounded up
    assert s["warmup_steps"] == round(0.05 * 207)
    assert "raised to 23 epochs of 9 steps" in s["reason"]


def test_past_the_epoch_cap_the_epochs_get_longer():
    """151 raccoon photos at batch 16 need 34 passes for 300 steps: 30 epochs of 10 steps instead."""
    s = core.fine_tune_schedule(151, 16, epochs=3, min_steps=300, patience=3)
    assert (s["epochs"], s["steps_per_epoch"], s["total_steps"]) == (core.MAX_RAISED_EPOCHS, 10, 300)
    tiny = core.fine_tune_schedule(8, 16, epochs=1, min_steps=300, patience=3)
    assert (tiny["epochs"], tiny["steps_per_epoch"], tiny["passes_per_epoch"]) == (30, 10, 10)
    asked = core.fine_tune_schedule(8, 16, epochs=40, min_steps=300, patience=3)
    assert (asked["epochs"], asked["steps_per_epoch"]) == (40, 8)  # more epochs asked than the cap: kept


def test_a_large_dataset_is_not_made_longer_than_asked():
    s = core.fine_tune_schedule(10_000, 16, epochs=3, min_steps=300, patience=3)
    assert (s["epochs"], s["steps_per_epoch"], s["total_steps"], s["patience"]) == (3, 625, 1875, 3)
    assert "as asked" in s["reason"]


def test_min_steps_zero_keeps_the_epochs_exactly():
    s = core.fine_tune_schedule(8, 16, epochs=2, min_steps=0, patience=3)
    assert (s["epochs"], s["steps_per_epoch"], s["total_steps"], s["patience"]) == (2, 1, 2, 3)


@pytest.mark.parametrize("kwargs", [{"epochs": 0, "min_steps": 300, "patience": 3},
                                    {"epochs": 3, "min_steps": -1, "patience": 3},
                                    {"epochs": 3, "min_steps": 300, "patience": 0}])
def test_bad_schedule_arguments_are_refused(kwargs):
    with pytest.raises(ValueError, match="need epochs >= 1"):
        core.fine_tune_schedule(100, 16, **kwargs)


def test_the_pipeline_length_is_a_minimum_too():
    assert PIPELINE_QAT.min_steps == QAT.min_steps and PIPELINE_QAT.epochs <= QAT.epochs


def _defaults(func) -> dict:
    func = getattr(func, "python_func", None) or func
    return {n: p.default for n, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _qat_flags() -> dict:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.default for a in action.choices["qat"]._actions if a.dest != "help"}


@pytest.mark.parametrize("name", ["epochs", "batch_size", "learning_rate", "seed", "patience", "min_steps",
                                  "freeze_bn", "freeze_ranges", "deterministic"])
def test_every_setting_reaches_the_core_and_the_cli(name):
    assert _defaults(core.qat)[name] == getattr(QAT, name)
    assert _qat_flags()[name] == getattr(QAT, name)


@pytest.mark.parametrize("name", ["min_steps", "freeze_bn", "freeze_ranges", "deterministic"])
def test_the_component_takes_the_new_settings(name):
    assert _defaults(qat_component.qat)[name] == getattr(QAT, name)


def test_the_cli_can_turn_the_freezes_and_determinism_off():
    parser = cli.build_parser()
    args = parser.parse_args(["qat", "--model", "m", "--data", "d", "--out", "o", "--no-freeze-bn",
                              "--no-freeze-ranges", "--no-deterministic", "--min-steps", "0"])
    assert (args.freeze_bn, args.freeze_ranges, args.deterministic, args.min_steps) == (False, False, False, 0)
