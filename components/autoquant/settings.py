"""The autoquant step's settings (defaults read by its core, its KFP component, `edgeship autoquant`
and the pipeline; tests/components/test_settings_drift.py fails when they drift)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AutoquantSettings:
    accuracy_budget: str = "1.0"   # max ΔmAP vs fp32, points; "none" = fastest
    max_latency_ms: float = 0.0    # 0 = no latency limit
    max_size_bytes: int = 0        # 0 = no size limit
    max_candidates: int = 12
    max_seconds: float = 0.0       # 0 = no time limit
    seed: int = 0
    step: int = 2                  # layers kept float added per selective round
    max_float_layers: int = 16
    calibration_images: int = 64
    latency_runs: int = 30


AUTOQUANT = AutoquantSettings()
