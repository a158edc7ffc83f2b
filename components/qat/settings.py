"""The qat step's settings (defaults read by its core, its KFP component, `edgeship qat` and the
pipeline; tests/components/test_settings_drift.py fails when they drift).

The fine-tune's rules (docs/pipeline.md, "QAT"): ``epochs`` is a minimum, raised when it gives
fewer than ``min_steps`` optimizer steps; ``learning_rate`` is the peak of a 5 % warm-up then
cosine decay; ``freeze_bn`` freezes BatchNorm statistics (gamma/beta still train);
``freeze_ranges`` keeps the activation ranges at their calibrated values; ``objective`` is what
the fine-tune minimises ("both": the labels' detection loss plus the distance to the float
model's outputs; "distill": the distance alone; "labels": the labels alone); ``deterministic``
runs TensorFlow's deterministic ops.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class QatSettings:
    epochs: int = 3               # a minimum: min_steps may raise it (small datasets)
    batch_size: int = 16
    learning_rate: float = 2e-4   # peak; warm-up then cosine decay to 1 %
    seed: int = 0
    patience: int = 3             # epochs; stretched with the epochs when min_steps raises them
    min_steps: int = 25           # optimizer steps at least (0: exactly `epochs`); more measured no better
    freeze_bn: bool = True        # BatchNorm in inference mode: moving mean/variance frozen
    freeze_ranges: bool = True    # activation ranges fixed at their calibrated values
    objective: str = "both"       # labels + distance to the float model ("distill": that alone)
    deterministic: bool = True    # TF deterministic ops: same seed, same model


OBJECTIVES = ("both", "distill", "labels")
QAT = QatSettings()
PIPELINE_QAT = replace(QAT, epochs=2)  # the pipeline's fine-tune length (a minimum, as above)
