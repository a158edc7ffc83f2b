"""The autoquant artifact's record of the search (``autoquant.json``): every candidate tried, the
budget and why the search stopped. ``load_result`` is its one reader."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def load_result(out_dir: str | os.PathLike) -> dict[str, Any]:
    """autoquant.json of an output dir (FileNotFoundError when missing, ValueError naming the
    file when it is not JSON)."""
    path = Path(out_dir) / "autoquant.json"
    if not path.is_file():
        raise FileNotFoundError(f"autoquant.json not found in {out_dir}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
