"""The quality gate's settings (defaults read by its core, the pipeline and `edgeship run`;
tests/components/test_settings_drift.py fails when they drift)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SelectSettings:
    accuracy_budget: str = "1.0"   # max ΔmAP@[.5:.95] vs float, points; "none" = not configured
    latency_budget_ms: float = 0.0  # max 1-thread median latency; 0 = none
    tolerance: float = 0.5          # max mAP drop vs the champion, points
    force_promote: bool = False


SELECT = SelectSettings()
