"""The qat step's settings (defaults read by its core, its KFP component, `edgeship qat` and the
pipeline; tests/components/test_settings_drift.py fails when they drift)."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class QatSettings:
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 2e-4
    seed: int = 0
    patience: int = 3


QAT = QatSettings()
PIPELINE_QAT = replace(QAT, epochs=2)  # the pipeline's fine-tune length
