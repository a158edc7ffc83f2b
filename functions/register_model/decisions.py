"""The function's log: one JSON line per decision (registered, duplicate, pending, rejected, ...)."""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from .errors import _NOTHING, Pending, Rejected, _show

log = logging.getLogger("register_model")



class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at emit time (the runtime or a test may replace it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def _ensure_log_handler() -> None:
    """One JSON line per record on stdout (Cloud Logging parses it); set up on first event."""
    if not log.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG if os.environ.get("REGISTER_MODEL_DEBUG") else logging.INFO)


def _decision(severity: str, decision: str, **fields: Any) -> dict:
    value = fields.pop("value", _NOTHING)
    record = {"severity": severity, "decision": decision,
              "message": f"register_model: {decision}" + (f": {fields['reason']}" if fields.get("reason") else ""),
              **{k: v for k, v in fields.items() if v is not None}}
    if value is not _NOTHING:
        record["value"] = _show(value)
    level = {"NOTICE": logging.INFO, "CRITICAL": logging.CRITICAL}.get(severity) or getattr(logging, severity)
    log.log(level, json.dumps(record, default=str))
    return record


def _refusal(severity: str, decision: str, exc: Rejected | Pending, ids: dict) -> dict:
    extra = {"field": exc.field} if exc.field else {}
    if exc.value is not _NOTHING:
        extra["value"] = exc.value
    return _decision(severity, decision, reason=str(exc), **extra, **ids)
