"""What can go wrong with an event, and how it is answered: Rejected (acknowledged, logged), Pending (a listed file has not landed yet), DeadlineExceeded / RetryableError (5xx: Eventarc redelivers), ConfigError."""
from __future__ import annotations

from typing import Any

_NOTHING = object()


class Rejected(Exception):
    """A permanent problem with the event or the manifest: log, acknowledge, never retry."""

    def __init__(self, reason: str, field: str | None = None, value: Any = _NOTHING) -> None:
        super().__init__(reason)
        self.field = field
        self.value = value


class Pending(Exception):
    """Listed files are not there yet: acknowledge; a later finalize in the folder re-checks."""

    def __init__(self, reason: str, field: str | None = None, value: Any = _NOTHING) -> None:
        super().__init__(reason)
        self.field = field
        self.value = value


class DeadlineExceeded(Exception):
    """The event's time budget is spent: transient (the event is redelivered)."""


class ConfigError(RuntimeError):
    """The function is deployed without a valid configuration (e.g. MODEL_BUCKET)."""


class RetryableError(Exception):
    """Raised out of the entry point: functions-framework answers 500 and Eventarc redelivers."""


def _show(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
