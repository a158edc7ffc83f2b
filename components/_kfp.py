"""Log figures on a KFP Metrics output so that the output also exists as a file.

KFP keeps logged metrics in the artifact's metadata and never writes the artifact's file.
kfp.local's cache treats a cache entry whose local output file is missing as a miss, so a step
with a Metrics output (train, qat, quantize, evaluate, autoquant) was never served from the
cache and a rerun retrained from scratch. Writing the figures to the file as JSON fixes that and
gives Vertex AI a readable copy next to the metadata. Plain Python: never imports kfp.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping


def log_metrics(artifact: Any, values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, float]:
    """``artifact.log_metric`` each (name, value) whose value is not None, then write every
    logged metric to ``artifact.path`` as JSON. Returns what was logged.

    A value that is not a finite number (a NaN mAP of a class with no objects, say) is not
    logged (Vertex AI cannot show it); the file lists its name under ``"not_finite"``.
    """
    items = values.items() if isinstance(values, Mapping) else values
    logged: dict[str, float] = {}
    skipped: list[str] = []
    for name, value in items:
        if value is None:
            continue
        number = float(value)
        if not math.isfinite(number):
            skipped.append(str(name))
            continue
        artifact.log_metric(str(name), number)
        logged[str(name)] = number
    doc = dict(artifact.metadata)
    if skipped:
        doc["not_finite"] = skipped
    path = Path(artifact.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
    return logged
