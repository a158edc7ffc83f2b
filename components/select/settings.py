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
    # quality floor for every release (the first included), an mAP in 0..1; 0 = off. Off by
    # default: what is "good enough" depends on the dataset (the embedded one reaches mAP@.5 ~0.55
    # at 40 epochs, a user's may stay under 0.3 and still be useful), and the pipeline's short test
    # runs train 1 epoch. Set it per channel: --min-map50 0.3 (docs/pipeline.md).
    min_map: float = 0.0
    min_map50: float = 0.0


SELECT = SelectSettings()
