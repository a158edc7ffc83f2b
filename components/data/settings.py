"""The data step's settings: one place for the defaults that its KFP component, `edgeship data
generate | import` and the pipeline read (tests/components/test_settings_drift.py fails when they
drift). The import options are also edgeship.detection.sources.importer.ImportOptions' defaults
(the same test checks that)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSettings:
    data_uri: str = ""           # "" = generate the embedded default dataset
    seed: int = 0                # generator seed; for imports, the seed of the carved splits
    train_images: int = 1500
    val_images: int = 300
    calibration_images: int = 200
    image_size: int = 160        # generated image side; for imports, the model input size
    # importing a user's dataset (data_uri that is not already a Dataset artifact)
    source_format: str = "auto"  # auto | coco | voc | tfod
    val_fraction: float = 0.15   # of train, carved when the source has no val split
    calibration_fraction: float = 0.1   # of train, carved when it has no calibration split
    strict: bool = False         # refuse boxes outside the image / zero-area / inverted, no size
    resize: str = "stretch"      # stretch | letterbox: how images reach the model input
    max_image_side: int = 1024   # longer image sides shrunk to this at import (0 = keep)
    tiny_box_px: float = 8.0     # report boxes with a side under this at the model input


DATA = DataSettings()
