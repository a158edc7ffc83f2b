"""Pipeline parameters: their names and types (read from the compiled spec), parsing of
command-line values, and the checks that run before anything is submitted or run."""
from __future__ import annotations

import math
from typing import Any

_TYPES = {"STRING": str, "NUMBER_DOUBLE": float, "NUMBER_INTEGER": int, "BOOLEAN": bool}

# Parameters whose value is a budget or tolerance: numbers >= 0 (accuracy_budget may be "none").
NON_NEGATIVE = ("latency_budget_ms", "tolerance", "epochs", "qat_epochs", "input_size",
                "autoquant_max_seconds", "train_min_steps", "seed")
# Parameters that must be strictly positive.
POSITIVE = ("learning_rate",)
# Parameters that count something that must happen at least once.
AT_LEAST_ONE = ("autoquant_max_candidates",)


def parameter_types(spec: dict[str, Any]) -> dict[str, tuple[type, Any]]:
    """name -> (python type, default or None) for each root input parameter of a compiled spec."""
    params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    out = {}
    for name, definition in params.items():
        kind = _TYPES.get(definition.get("parameterType"), str)
        out[name] = (kind, definition.get("defaultValue"))
    return out


def _coerce(name: str, kind: type, value: Any, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ValueError(f"{where}: parameter {name!r} must be true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"{where}: parameter {name!r} must be a number, got {value!r}")
        try:
            number = kind(value) if kind is float else int(str(value).strip())
        except (TypeError, ValueError):
            raise ValueError(f"{where}: parameter {name!r} must be "
                             f"{'an integer' if kind is int else 'a number'}, got {value!r}") from None
        if kind is float and not math.isfinite(number):
            raise ValueError(f"{where}: parameter {name!r} must be finite, got {value!r}")
        return number
    return str(value)


def coerce_parameters(spec: dict[str, Any], values: dict[str, Any], *,
                      where: str = "pipeline parameters") -> dict[str, Any]:
    """Check names against the spec and convert each value to its declared type.

    Raises ValueError naming an unknown parameter (and listing the known ones) or a bad value.
    """
    types = parameter_types(spec)
    out = {}
    for name, value in values.items():
        if name not in types:
            raise ValueError(f"{where}: unknown pipeline parameter {name!r}; known: "
                             f"{', '.join(sorted(types))}")
        out[name] = _coerce(name, types[name][0], value, where)
    check_values(out, where=where)
    return out


def check_values(values: dict[str, Any], *, where: str = "pipeline parameters") -> None:
    """Range checks: budgets and tolerances non-negative numbers; accuracy_budget a number or 'none'."""
    from edgeship.contracts.budget import parse_budget

    if "accuracy_budget" in values:
        try:
            parse_budget(values["accuracy_budget"], name="accuracy_budget")
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    for name in NON_NEGATIVE:
        if name in values and float(values[name]) < 0:
            raise ValueError(f"{where}: parameter {name!r} must be >= 0, got {values[name]!r}")
    for name in POSITIVE:
        if name in values and not float(values[name]) > 0:
            raise ValueError(f"{where}: parameter {name!r} must be > 0, got {values[name]!r}")
    for name in AT_LEAST_ONE:
        if name in values and float(values[name]) < 1:
            raise ValueError(f"{where}: parameter {name!r} must be >= 1, got {values[name]!r}")
    from components.qat.settings import OBJECTIVES
    from edgeship.detection.early_stop import METRICS

    for name, allowed in (("qat_objective", OBJECTIVES), ("early_stop", METRICS)):
        if name in values and values[name] not in allowed:
            raise ValueError(f"{where}: parameter {name!r} must be one of {', '.join(allowed)}, "
                             f"got {values[name]!r}")


def parse_assignments(items: list[str] | None, *, where: str = "--param") -> dict[str, str]:
    """['a=1', 'b=x'] -> {'a': '1', 'b': 'x'}; raises ValueError on an item without '='."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{where} {item!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


def check_data_uri(uri: str, *, cloud: bool) -> None:
    """An empty URI means "generate the embedded default". A local path must exist (and cannot
    serve a cloud run); a gs:// URI must have objects under it.

    Raises FileNotFoundError / ValueError naming the URI.
    """
    if not uri:
        return
    from edgeship.base import storage

    if storage.is_gcs(uri):
        storage.parse_gcs(uri)
        try:
            found = storage.exists(uri)
        except Exception as exc:  # noqa: BLE001 - any client error means we cannot confirm it
            raise FileNotFoundError(f"data_uri {uri!r} cannot be checked: {exc}") from exc
        if not found:
            raise FileNotFoundError(f"data_uri {uri!r} does not exist (no object under that prefix)")
        return
    if cloud:
        raise ValueError(f"data_uri {uri!r} is a local path: a cloud run can only read gs:// URIs")
    from pathlib import Path

    if not Path(uri).exists():
        raise FileNotFoundError(f"data_uri {uri!r} does not exist")
