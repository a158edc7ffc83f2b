"""The evaluate step's settings (defaults read by its core, its KFP component, `edgeship evaluate`;
tests/components/test_settings_drift.py fails when they drift)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluateSettings:
    split: str = "val"
    latency_runs: int = 50      # timed runs per thread setting
    latency_warmup: int = 5


EVALUATE = EvaluateSettings()
