"""Checking one box against its image: clip what sticks out, drop what cannot be a box.

``clip_box`` is pure (property-tested); ``check_box`` reports through Issues with the file and
annotation named, so ``--strict`` refuses instead of fixing.
"""
from __future__ import annotations

import math

from edgeship.detection.sources.records import Issues

# Coordinates up to this far outside the image are rounding (a box drawn to the last pixel edge,
# float exports): clipped without a warning.
EDGE_TOLERANCE_PX = 1.0

Box = tuple[float, float, float, float]


def clip_box(box: Box, width: float, height: float,
             tolerance: float = EDGE_TOLERANCE_PX) -> tuple[Box | None, str | None]:
    """(x0, y0, x1, y1) pixels → (the box clipped to the image or None, what was wrong or None).

    Problems: "inverted" (x1 < x0 or y1 < y0, or a coordinate not finite: dropped), "outside"
    (no area left inside the image: dropped), "zero_area" (x1 == x0 or y1 == y0: dropped),
    "clipped" (moved more than ``tolerance`` px to fit: kept, clipped). A box inside the image
    comes back unchanged with None.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 < x0 or y1 < y0:
        return None, "inverted"
    if x1 == x0 or y1 == y0:
        return None, "zero_area"
    cx0, cy0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    if cx1 <= cx0 or cy1 <= cy0:
        return None, "outside"
    moved = max(abs(cx0 - x0), abs(cy0 - y0), abs(cx1 - x1), abs(cy1 - y1))
    return (cx0, cy0, cx1, cy1), ("clipped" if moved > tolerance else None)


def _shown(box: Box) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"


def check_box(box: Box, width: int, height: int, where: str, issues: Issues) -> Box | None:
    """The box to keep (clipped) or None to drop it; every change is a warning naming ``where``
    (an error under --strict)."""
    kept, problem = clip_box(box, width, height)
    shown = f"box {_shown(box)} (x0, y0, x1, y1)"
    if problem == "inverted":
        issues.warn("box_inverted", f"{where}: {shown} is inverted or not finite: dropped")
    elif problem == "zero_area":
        issues.warn("box_zero_area", f"{where}: {shown} has zero area: dropped")
    elif problem == "outside":
        issues.warn("box_outside", f"{where}: {shown} lies outside the {width}x{height} image: "
                                   "dropped")
    elif problem == "clipped":
        issues.warn("box_clipped", f"{where}: {shown} extends outside the {width}x{height} image: "
                                   f"clipped to {_shown(kept)}")
    return kept
