"""Robustness slices made from the val split: dark, bright, blurred, occluded.

These are the edge cases the background material says quantization can hit hardest (unusual
lighting, occlusions). Every slice keeps each example's id, boxes and labels and only changes
pixels, so the same ground truth scores it. Deterministic: the occlusion patches come from a
seeded generator keyed by the example's position.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

SLICES = ("dark", "bright", "blurred", "occluded")


def _replace_image(example: Any, image: np.ndarray) -> Any:
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if dataclasses.is_dataclass(example):
        return dataclasses.replace(example, image=image)
    if hasattr(example, "_replace"):
        return example._replace(image=image)
    raise TypeError(f"cannot copy example of type {type(example).__name__} with a new image")


def darken(image: np.ndarray, *, gamma: float = 2.0, gain: float = 0.6) -> np.ndarray:
    """Under-exposure: gamma > 1 then a gain < 1 (pixels only get darker)."""
    x = image.astype(np.float32) / 255.0
    return 255.0 * gain * np.power(x, gamma)


def brighten(image: np.ndarray, *, gamma: float = 0.5, offset: float = 40.0) -> np.ndarray:
    """Over-exposure: gamma < 1 plus an offset, clipped at 255 (pixels only get brighter)."""
    x = image.astype(np.float32) / 255.0
    return np.minimum(255.0 * np.power(x, gamma) + offset, 255.0)


def blur(image: np.ndarray, *, sigma: float | None = None) -> np.ndarray:
    """Gaussian blur; sigma defaults to 1% of the image's shorter side (at least 1.5 px)."""
    from PIL import Image, ImageFilter

    if sigma is None:
        sigma = max(1.5, 0.01 * min(image.shape[:2]))
    blurred = Image.fromarray(np.asarray(image, np.uint8)).filter(ImageFilter.GaussianBlur(radius=sigma))
    return np.asarray(blurred, np.float32)


def occlude(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, *,
            fraction: tuple[float, float] = (0.25, 0.45)) -> np.ndarray:
    """Cover part of every object with a flat grey-ish patch whose area is ``fraction`` of the box
    (random size, aspect and position inside the box); pixels outside boxes are untouched."""
    out = image.astype(np.float32).copy()
    height, width = image.shape[:2]
    for ymin, xmin, ymax, xmax in np.asarray(boxes, np.float32).reshape(-1, 4):
        y0, x0 = int(np.floor(ymin * height)), int(np.floor(xmin * width))
        y1, x1 = int(np.ceil(ymax * height)), int(np.ceil(xmax * width))
        bh, bw = max(y1 - y0, 1), max(x1 - x0, 1)
        area = rng.uniform(*fraction)
        aspect = rng.uniform(0.5, 2.0)
        ph = int(np.clip(round(bh * np.sqrt(area * aspect)), 1, bh))
        pw = int(np.clip(round(bw * area / max(ph / bh, 1e-6)), 1, bw))
        py = y0 + int(rng.integers(0, bh - ph + 1))
        px = x0 + int(rng.integers(0, bw - pw + 1))
        colour = rng.uniform(80, 176, size=3)
        out[py:py + ph, px:px + pw, :] = colour
    return out


def make_slice(examples: Sequence[Any], name: str, *, seed: int = 0) -> list[Any]:
    """One robustness slice of ``examples`` (same ids, boxes, labels; new pixels).

    Raises ValueError for an unknown slice name.
    """
    transforms: dict[str, Callable[[int, Any], np.ndarray]] = {
        "dark": lambda i, ex: darken(ex.image),
        "bright": lambda i, ex: brighten(ex.image),
        "blurred": lambda i, ex: blur(ex.image),
        "occluded": lambda i, ex: occlude(ex.image, ex.boxes, np.random.default_rng([seed, i])),
    }
    if name not in transforms:
        raise ValueError(f"unknown robustness slice {name!r}; known: {', '.join(SLICES)}")
    if hasattr(examples, "with_transform"):  # a StreamedSplit: the slice is made as images are read
        return examples.with_transform(lambda i, ex: _replace_image(ex, transforms[name](i, ex)))
    return [_replace_image(ex, transforms[name](i, ex)) for i, ex in enumerate(examples)]


def make_slices(examples: Sequence[Any], names: Sequence[str] = SLICES, *, seed: int = 0) -> dict[str, list[Any]]:
    """Every named slice, built once (all variants are scored on the same pixels)."""
    return {name: make_slice(examples, name, seed=seed) for name in names}
