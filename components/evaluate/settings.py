"""The evaluate step's settings (defaults read by its core, its KFP component, `edgeship evaluate`;
tests/components/test_settings_drift.py fails when they drift)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluateSettings:
    split: str = "val"
    latency_runs: int = 50      # timed runs per thread setting
    latency_warmup: int = 5
    # intervals: mAP / mAP@.5 / ΔmAP by a paired bootstrap over images (0 resamples = none), the
    # latency median by a block bootstrap over latency_blocks rounds of variants timed in turns.
    # 200 resamples: ~1 s per model on 300 images (docs/contracts.md "Evaluation artifact")
    bootstrap_resamples: int = 200
    confidence: float = 0.95
    latency_blocks: int = 10
    # per-layer diagnosis when no int8 variant is within the accuracy budget: selective int8 with
    # the worst k layers kept float, for each k here (components/evaluate/diagnose.py)
    diagnose: bool = True
    selective_layers: tuple[int, ...] = (1, 3, 10)
    # views per val photo for the gate's ΔmAP (photo, mirror, centre crop, both; resampled by photo):
    # -1 = auto, up to 4 until photos × views ≥ 200 (components/evaluate/views.py); 1 = photos only
    views: int = -1


EVALUATE = EvaluateSettings()
