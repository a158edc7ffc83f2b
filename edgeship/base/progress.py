"""Machine-readable progress lines from a pipeline step to whoever runs it.

A step prints ``EDGESHIP_PROGRESS {json}`` lines on its stdout; the main job (pipelines.local)
reads its steps' output, turns these lines into one live progress line per running step and keeps
everything else in the step log file. A step emits only when the ``EDGESHIP_PROGRESS``
environment variable is set (pipelines.local sets it for its steps), so the standalone commands
(``edgeship train`` with its own progress bar) and cloud runs print nothing extra.

The fields (all optional; ``describe`` renders them in this order):

- ``item``, ``index``, ``count``: the thing being worked on, e.g. the variant "full_int8" (4/7);
- ``epoch``, ``epochs``, ``batch``, ``batches``: training position (batch within the epoch);
- ``phase``: free text, e.g. "loading data", "latency", "exporting";
- ``loss``, ``val_loss``, ``map``, ``map50``: figures; ``img_s``: throughput; ``eta_s``: seconds left;
- ``mark``: true on milestones (an epoch or a variant finished): a display that cannot redraw a
  line in place (output not a terminal) prints only these.

Plain Python, standard library only.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, TextIO

PREFIX = "EDGESHIP_PROGRESS "
ENV = "EDGESHIP_PROGRESS"


def enabled() -> bool:
    """True when this process's runner asked for progress lines (``EDGESHIP_PROGRESS`` set)."""
    return os.environ.get(ENV, "") not in ("", "0")


def format_line(**fields: Any) -> str:
    """The progress line for ``fields`` (no newline); None and non-finite numbers are dropped."""
    clean = {k: v for k, v in fields.items()
             if v is not None and not (isinstance(v, float) and not math.isfinite(v))}
    return PREFIX + json.dumps(clean, separators=(",", ":"), default=_json_default, allow_nan=False)


def emit(stream: TextIO | None = None, **fields: Any) -> None:
    """Print one progress line (flushed) when enabled(); does nothing otherwise."""
    if not enabled():
        return
    out = stream or sys.stdout
    try:
        out.write(format_line(**fields) + "\n")
        out.flush()
    except (OSError, ValueError):  # a closed or broken stdout must not fail the step
        pass


class Reporter:
    """Rate-limited ``emit`` for loops: at most one line per ``interval`` seconds, except calls
    with ``force=True`` (milestones), which always go out."""

    def __init__(self, interval: float = 1.0, clock=time.monotonic):
        self.interval = interval
        self._clock = clock
        self._last = -math.inf

    def __call__(self, *, force: bool = False, **fields: Any) -> bool:
        if not enabled():
            return False
        now = self._clock()
        if not force and now - self._last < self.interval:
            return False
        self._last = now
        emit(**fields)
        return True


def parse(line: str) -> dict[str, Any] | None:
    """The fields of a progress line, or None when ``line`` is not one (or is garbled). The
    prefix may appear after other text on the line (a native log line that lost its newline)."""
    at = line.find(PREFIX)
    if at < 0:
        return None
    try:
        fields = json.loads(line[at + len(PREFIX):].strip())
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


def duration(seconds: float) -> str:
    """Seconds as "45s", "3m10s" or "1h02m"."""
    s = max(0, int(round(float(seconds))))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def describe(fields: dict[str, Any]) -> str:
    """One human line for a progress event, e.g. "epoch 12/40  step 50/93  loss 0.840  val 0.910
    151 img/s  ETA 3m10s" or "full_int8 (4/7)  converting"."""
    parts: list[str] = []
    item = fields.get("item")
    if item:
        text = str(item)
        if fields.get("index") is not None and fields.get("count"):
            text += f" ({fields['index']}/{fields['count']})"
        parts.append(text)
    if fields.get("epoch") is not None and fields.get("epochs"):
        parts.append(f"epoch {fields['epoch']}/{fields['epochs']}")
        if fields.get("batch") is not None and fields.get("batches"):
            parts.append(f"step {fields['batch']}/{fields['batches']}")
    if fields.get("phase"):
        parts.append(str(fields["phase"]))
    for key, label in (("loss", "loss"), ("val_loss", "val"), ("map", "mAP"), ("map50", "mAP@.5")):
        value = _number(fields.get(key))
        if value is not None:
            parts.append(f"{label} {value:.3f}")
    img_s = _number(fields.get("img_s"))
    if img_s is not None:
        parts.append(f"{img_s:.0f} img/s")
    eta = _number(fields.get("eta_s"))
    if eta is not None:
        parts.append(f"ETA {duration(eta)}")
    return "  ".join(parts)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _json_default(value: Any) -> Any:
    try:
        number = float(value)  # numpy scalars
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None
