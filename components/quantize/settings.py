"""The quantize step's settings (defaults read by its core, its KFP component, `edgeship quantize`;
tests/components/test_settings_drift.py fails when they drift)."""
from __future__ import annotations

from dataclasses import dataclass

from edgeship.detection.convert import DEFAULT_SCHEMES


@dataclass(frozen=True)
class QuantizeSettings:
    num_calibration: int = 200
    schemes: tuple[str, ...] = DEFAULT_SCHEMES   # every scheme the converter knows
    coreml: bool = True

    @property
    def schemes_text(self) -> str:
        """The schemes as the KFP component takes them (comma-separated)."""
        return ",".join(self.schemes)


QUANTIZE = QuantizeSettings()
