"""The accuracy budget: how a budget is given (a number of mAP points, or "none") and parsed, for
the gate, autoquant and the pipeline parameters."""
from __future__ import annotations

import math
from typing import Any


def parse_budget(value: Any, *, name: str = "accuracy budget") -> float | None:
    """Parse a budget given as a number or text. "", "none" → None (not configured).

    Raises ValueError naming the value when it is not a number or is negative.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "none", "null"):
            return None
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number of mAP points (or 'none'), got {value!r}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError(f"{name} must be a number of mAP points (or 'none'), got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if number < 0:
        raise ValueError(f"{name} must be >= 0 mAP points, got {value!r}")
    return number


NO_BUDGET_PT = 100.0  # ΔmAP in points cannot exceed 100: "no accuracy limit"


def budget_points(accuracy_budget: Any) -> float:
    """The pipeline's accuracy budget (a number or text like "1.0"; "none" = no limit) as the
    search's ``budget_pt``. Raises ValueError naming the value when it is not a number >= 0."""
    parsed = parse_budget(accuracy_budget, name="autoquant accuracy_budget")
    return NO_BUDGET_PT if parsed is None else parsed
