"""The Model artifact (train's and qat's output; docs/contracts.md "Model artifact"): a folder with
``model_config.json`` (the detector's config: input_size, num_classes, labels, anchors' geometry,
...), ``anchors.npy`` (float32 [A, 4]), ``weights.h5`` (``qat_weights.h5`` for QAT),
``saved_model/`` (``qat_saved_model/``), ``history.json`` and TensorBoard ``logs/``.

This module names the files and reads/writes the parts every consumer shares; the detector's own
typed config (``edgeship.detection.model.ModelConfig``) builds on :func:`read_config`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

CONFIG_FILE = "model_config.json"
ANCHORS_FILE = "anchors.npy"
WEIGHTS_FILE = "weights.h5"
QAT_WEIGHTS_FILE = "qat_weights.h5"
SAVED_MODEL_DIR = "saved_model"
QAT_SAVED_MODEL_DIR = "qat_saved_model"
HISTORY_FILE = "history.json"
LABELS_FILE = "labels.txt"
REQUIRED_CONFIG_KEYS = ("input_size", "num_classes")


def read_config(model_dir: str | Path, what: str = "model") -> dict[str, Any]:
    """model_config.json as a dict with REQUIRED_CONFIG_KEYS (FileNotFoundError / ValueError
    naming ``what``, the folder and the bad part)."""
    root = Path(model_dir)
    path = root / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{what} {root}: {CONFIG_FILE} missing (not a Model artifact?)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {root}: {CONFIG_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{what} {root}: {CONFIG_FILE} must be a JSON object")
    for key in REQUIRED_CONFIG_KEYS:
        if key not in config:
            raise ValueError(f"{what} {root}: {CONFIG_FILE} lacks {key!r}")
    return config


def read_anchors(model_dir: str | Path, what: str = "model") -> np.ndarray:
    """anchors.npy as float32 [A, 4] (FileNotFoundError / ValueError naming the file)."""
    root = Path(model_dir)
    path = root / ANCHORS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{what} {root}: {ANCHORS_FILE} missing")
    try:
        anchors = np.load(path).astype(np.float32)
    except Exception as exc:
        raise ValueError(f"{what} {root}: {ANCHORS_FILE} unreadable: {exc}") from exc
    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise ValueError(f"{what} {root}: {ANCHORS_FILE} has shape {anchors.shape}, expected [A, 4]")
    return anchors


def read_labels(model_dir: str | Path, config: dict[str, Any]) -> list[str]:
    """The label map: config["labels"], else labels.txt beside it, else []."""
    labels = [str(v) for v in (config.get("labels") or [])]
    path = Path(model_dir) / LABELS_FILE
    if not labels and path.is_file():
        labels = [s for s in path.read_text().splitlines() if s.strip()]
    return labels


def write_anchors(model_dir: str | Path, anchors: np.ndarray) -> Path:
    path = Path(model_dir) / ANCHORS_FILE
    np.save(path, np.asarray(anchors, dtype=np.float32))
    return path
