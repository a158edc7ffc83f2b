"""The publish step's settings (defaults read by its core, the pipeline and `edgeship publish`;
tests/components/test_settings_drift.py fails when they drift)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishSettings:
    model_name: str = "edgeship-detector"
    channel: str = "stable"
    bucket: str = "edgeship"
    min_app_version: str = "1.0.0"


PUBLISH = PublishSettings()
