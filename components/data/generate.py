"""A deterministic synthetic object-detection dataset that is worth quantizing.

Shapes of five classes, varied in size, colour and rotation, on textured, noisy backgrounds;
one to five objects per image with bounded partial overlap; lighting changes (gain, gradient,
gamma), blur and occluders. Every image is drawn from its own numpy Generator seeded with
(seed, split, index), so changing one split's size never changes another image, and a fixed seed
gives identical bytes (Pillow's JPEG encoder is deterministic for fixed quality/subsampling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle", "star", "hexagon")
SPLIT_IDS = {"train": 0, "val": 1, "calibration": 2}


@dataclass(frozen=True)
class GeneratorConfig:
    """What the generator draws. Defaults make training take a few minutes on 2 cores."""

    image_size: int = 160
    min_objects: int = 1
    max_objects: int = 5
    min_size: int = 22          # object side (px) at image_size 160; scales with image_size
    max_size: int = 72
    max_overlap_iou: float = 0.25
    occlusion_prob: float = 0.3
    blur_prob: float = 0.3
    jpeg_quality: int = 90
    classes: tuple[str, ...] = field(default=CLASSES)

    def to_json(self) -> dict:
        d = self.__dict__.copy()
        d["classes"] = list(self.classes)
        return d


@dataclass
class DrawnImage:
    jpeg: bytes
    boxes_px: list[tuple[float, float, float, float]]  # x0, y0, x1, y1 in pixels
    class_ids: list[int]                                # 1..K


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "square":
        pts = [(math.cos(angle + math.pi / 4 + k * math.pi / 2), math.sin(angle + math.pi / 4 + k * math.pi / 2)) for k in range(4)]
    elif kind == "triangle":
        pts = [(math.cos(angle + k * 2 * math.pi / 3), math.sin(angle + k * 2 * math.pi / 3)) for k in range(3)]
    elif kind == "hexagon":
        pts = [(math.cos(angle + k * math.pi / 3), math.sin(angle + k * math.pi / 3)) for k in range(6)]
    elif kind == "star":
        pts = []
        for k in range(10):
            rad = 1.0 if k % 2 == 0 else 0.45
            a = angle + k * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    return [(cx + r * x, cy + r * y) for x, y in pts]


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(40, 215, size=3)
    # low-frequency colour blotches
    coarse = rng.normal(0, 28, size=(5, 5, 3))
    low = np.asarray(Image.fromarray(np.uint8(np.clip(coarse + 128, 0, 255))).resize((size, size), Image.BICUBIC), np.float32) - 128
    img = base + low
    kind = rng.integers(0, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == 1:  # stripes
        period = rng.uniform(6, 20)
        theta = rng.uniform(0, math.pi)
        stripes = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
        img += stripes[..., None] * rng.uniform(6, 18)
    elif kind == 2:  # checker-ish texture
        cell = int(rng.integers(6, 16))
        checker = ((xx // cell + yy // cell) % 2) * 2 - 1
        img += checker[..., None] * rng.uniform(5, 14)
    img += rng.normal(0, rng.uniform(3, 12), size=img.shape)  # sensor noise
    return img


def _colour_far_from(rng: np.random.Generator, ref: np.ndarray, min_dist: float = 90.0) -> tuple[int, int, int]:
    for _ in range(50):
        c = rng.uniform(0, 255, size=3)
        if np.linalg.norm(c - ref) >= min_dist:
            return tuple(int(v) for v in c)
    return tuple(int(v) for v in (255 - ref))


def draw_image(rng: np.random.Generator, cfg: GeneratorConfig) -> DrawnImage:
    """Draw one image and its boxes. Deterministic given the Generator's state."""
    size = cfg.image_size
    scale = size / 160.0
    bg = _background(rng, size)
    canvas = Image.fromarray(np.uint8(np.clip(bg, 0, 255)))
    draw = ImageDraw.Draw(canvas)
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    for _ in range(n):
        for _attempt in range(30):
            kind_idx = int(rng.integers(0, len(cfg.classes)))
            side = rng.uniform(cfg.min_size, cfg.max_size) * scale
            r = side / 2
            cx = rng.uniform(r * 0.7, size - r * 0.7)
            cy = rng.uniform(r * 0.7, size - r * 0.7)
            angle = rng.uniform(0, 2 * math.pi)
            kind = cfg.classes[kind_idx]
            if kind == "circle":
                box = (cx - r, cy - r, cx + r, cy + r)
                poly = None
            else:
                poly = _polygon(kind, cx, cy, r, angle)
                xs, ys = zip(*poly)
                box = (min(xs), min(ys), max(xs), max(ys))
            box = (max(0.0, box[0]), max(0.0, box[1]), min(float(size), box[2]), min(float(size), box[3]))
            if box[2] - box[0] < 6 * scale or box[3] - box[1] < 6 * scale:
                continue
            if any(_iou(box, b) > cfg.max_overlap_iou for b in boxes):
                continue
            local = bg[int(box[1]):int(box[3]) + 1, int(box[0]):int(box[2]) + 1].reshape(-1, 3).mean(0)
            colour = _colour_far_from(rng, local)
            if kind == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
            else:
                draw.polygon(poly, fill=colour)
            boxes.append(box)
            labels.append(kind_idx + 1)
            break
    # occluders: bars or blobs over part of an object (never most of it)
    for box in boxes:
        if rng.uniform() >= cfg.occlusion_prob:
            continue
        w, h = box[2] - box[0], box[3] - box[1]
        colour = tuple(int(v) for v in rng.uniform(0, 255, size=3))
        if rng.uniform() < 0.5:  # a bar across one edge, covering <= 30% of the box
            if rng.uniform() < 0.5:
                bw = w * rng.uniform(0.12, 0.3)
                x0 = box[0] - bw * 0.3 if rng.uniform() < 0.5 else box[2] - bw * 0.7
                draw.rectangle([x0, box[1] - h * 0.2, x0 + bw, box[3] + h * 0.2], fill=colour)
            else:
                bh = h * rng.uniform(0.12, 0.3)
                y0 = box[1] - bh * 0.3 if rng.uniform() < 0.5 else box[3] - bh * 0.7
                draw.rectangle([box[0] - w * 0.2, y0, box[2] + w * 0.2, y0 + bh], fill=colour)
        else:  # a blob on a corner
            rr = min(w, h) * rng.uniform(0.15, 0.3)
            cx = box[0] if rng.uniform() < 0.5 else box[2]
            cy = box[1] if rng.uniform() < 0.5 else box[3]
            draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=colour)
    img = np.asarray(canvas, np.float32)
    # lighting: global gain, a linear gradient, gamma
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, 2 * math.pi)
    gradient = 1.0 + rng.uniform(0, 0.35) * ((xx - 0.5) * math.cos(theta) + (yy - 0.5) * math.sin(theta))
    img = img * rng.uniform(0.65, 1.25) * gradient[..., None]
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.8, 1.25)
    img += rng.normal(0, 2.0, size=img.shape)
    out = Image.fromarray(np.uint8(np.clip(img, 0, 255)))
    if rng.uniform() < cfg.blur_prob:
        out = out.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.5)) * scale))
    import io

    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=cfg.jpeg_quality, subsampling=2, optimize=False)
    return DrawnImage(buf.getvalue(), boxes, labels)


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_IDS[split], index])
