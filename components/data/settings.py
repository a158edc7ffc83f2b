"""The data step's settings: one place for the defaults that its KFP component, `edgeship data
generate` and the pipeline read (tests/components/test_settings_drift.py fails when they drift)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSettings:
    data_uri: str = ""           # "" = generate the embedded default dataset
    seed: int = 0
    train_images: int = 1500
    val_images: int = 300
    calibration_images: int = 200
    image_size: int = 160


DATA = DataSettings()
