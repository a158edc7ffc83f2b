"""A deterministic synthetic object-detection dataset that is worth quantizing.

Shapes of five classes (circle, square, triangle, star, hexagon) at 18-80 px (at 160x160; sizes
scale with the image), any colour, any rotation, a little aspect jitter, shading and sometimes an
outline; on backgrounds of two-colour cloudy noise, stripes or a grid with small clutter (dots,
short strokes); one to five objects per image with bounded partial overlap; occluding bars and
blobs; lighting changes (gain, gradient, gamma), blur, sensor noise and JPEG.

Every object keeps at least ``min_visible`` of its area visible after everything drawn on top of
it (later objects and occluders), and two objects' boxes never overlap more than
``max_overlap_iou``: objects stay identifiable. Boxes are the tight pixel boxes of each whole
(amodal) shape, always inside the image.

Every image is drawn from its own numpy Generator seeded with (seed, split, index), so changing
one split's size never changes another image, and a fixed seed gives identical bytes (Pillow's
JPEG encoder is deterministic for fixed quality/subsampling). numpy + Pillow only.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle", "star", "hexagon")
SPLIT_IDS = {"train": 0, "val": 1, "calibration": 2}
SUPERSAMPLE = 4  # shapes are drawn at 4x and box-filtered down: anti-aliased edges


@dataclass(frozen=True)
class GeneratorConfig:
    """What the generator draws. Defaults make training take a few minutes on 2 cores."""

    image_size: int = 160
    min_objects: int = 1
    max_objects: int = 5
    min_size: float = 18.0      # longest side of an object's box (px) at image_size 160; scales
    max_size: float = 80.0
    max_overlap_iou: float = 0.3  # between any two objects' boxes
    min_visible: float = 0.6    # fraction of each object's area left visible
    occlusion_prob: float = 0.35  # chance of an occluder per image (a second one: a third of that)
    blur_prob: float = 0.3
    max_blur: float = 1.4       # Gaussian radius at 160 px
    max_noise: float = 8.0      # sensor noise sigma, 0..255
    min_contrast: float = 80.0  # RGB distance between an object's colour and the background under it
    texture: float = 1.0        # amplitude of the background's stripes/grid/fine noise (0 = smooth)
    max_clutter: int = 6        # small distractors (dots, strokes) per image, up to
    jpeg_quality: int = 90
    classes: tuple[str, ...] = field(default=CLASSES)

    def to_json(self) -> dict:
        d = self.__dict__.copy()
        d["classes"] = list(self.classes)
        return d

    def validate(self) -> None:
        """Raise ValueError naming the bad setting."""
        if self.image_size < 32:
            raise ValueError(f"image_size {self.image_size} is too small (>= 32)")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if not 8 <= self.min_size <= self.max_size <= 120:
            raise ValueError(f"need 8 <= min_size <= max_size <= 120 (px at 160), got "
                             f"{self.min_size}, {self.max_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1..100, got {self.jpeg_quality}")
        unknown = [c for c in self.classes if c not in CLASSES]
        if unknown or not self.classes:
            raise ValueError(f"classes {list(self.classes)}: each must be one of {list(CLASSES)}")


@dataclass
class DrawnImage:
    jpeg: bytes
    boxes_px: list[tuple[float, float, float, float]]  # x0, y0, x1, y1 in pixels
    class_ids: list[int]                                # 1..K
    visible: list[float] = field(default_factory=list)  # fraction of each object left visible


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The Generator image ``index`` of ``split`` is drawn from."""
    return np.random.default_rng([int(seed), SPLIT_IDS[split], int(index)])


# --------------------------------------------------------------------------- colours

def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, np.float32) * 255.0


def _colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(*sat), rng.uniform(*val))


# --------------------------------------------------------------------------- background

def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in 0..1: a random grid upsampled bicubically."""
    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), np.float32) / 255.0


def _background(rng: np.random.Generator, size: int, texture: float = 1.0, max_clutter: int = 6) -> np.ndarray:
    c1 = _colour(rng, (0.0, 0.6), (0.15, 0.95))
    c2 = _colour(rng, (0.0, 0.6), (0.15, 0.95))
    mix = _smooth_noise(rng, size, int(rng.integers(3, 8)))[..., None]
    img = c1 * (1 - mix) + c2 * mix
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = int(rng.integers(0, 3))
    if kind == 1:  # stripes
        theta = rng.uniform(0, math.pi)
        period = rng.uniform(6, 22) * size / 160
        wave = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
        img = img + wave[..., None] * np.float32(rng.uniform(6, 20) * texture)
    elif kind == 2:  # grid of thin lines
        period = rng.uniform(10, 28) * size / 160
        lines = ((xx % period) < 1.5) | ((yy % period) < 1.5)
        img = img + np.where(lines, np.float32(rng.uniform(-30, 30) * texture), np.float32(0))[..., None]
    fine = _smooth_noise(rng, size, max(8, size // 5))[..., None] - 0.5
    img = img + np.float32(rng.uniform(10, 30) * texture) * fine
    # clutter: dots and short strokes, smaller than any object
    n = int(rng.integers(0, max_clutter + 1))
    if n:
        layer = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(layer)
        for _ in range(n):
            x, y = rng.uniform(0, size), rng.uniform(0, size)
            if rng.random() < 0.5:
                r = rng.uniform(1, 3)
                draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
            else:
                a, length = rng.uniform(0, math.pi), rng.uniform(4, 10)
                draw.line([x, y, x + length * math.cos(a), y + length * math.sin(a)], fill=255, width=1)
        alpha = np.asarray(layer, np.float32)[..., None] / 255.0 * rng.uniform(0.4, 0.9)
        img = img * (1 - alpha) + alpha * _colour(rng, (0.0, 0.8), (0.1, 1.0))
    return img


# --------------------------------------------------------------------------- shapes

def _outline(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices of a shape around the origin, radius about 1."""
    if kind == "circle":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    elif kind == "square":
        t = math.pi / 4 + np.arange(4) * math.pi / 2
    elif kind == "triangle":
        t = -math.pi / 2 + np.arange(3) * 2 * math.pi / 3 + rng.uniform(-0.12, 0.12, 3)
    elif kind == "hexagon":
        t = np.arange(6) * math.pi / 3
    elif kind == "star":
        t = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.4, 0.5))
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    return np.stack([np.cos(t), np.sin(t)], 1)


def _shape_patch(kind: str, side: float, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased alpha (0..1) of one shape whose box's longest side is about ``side`` px."""
    pts = _outline(kind, rng)
    aspect = rng.uniform(0.87, 1.15)
    angle = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    pts = (pts * np.array([aspect, 1.0 / aspect])) @ rot.T
    pts = pts * (side / (pts.max(0) - pts.min(0)).max())
    n = int(math.ceil(side)) + 4
    s = SUPERSAMPLE
    layer = Image.new("L", (n * s, n * s), 0)
    ImageDraw.Draw(layer).polygon([tuple(v) for v in (pts + n / 2) * s], fill=255)
    return np.asarray(layer.resize((n, n), Image.BOX), np.float32) / 255.0


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """[x0, x1) x [y0, y1) of the pixels at least half covered."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _visible(mask: np.ndarray, on_top: list[np.ndarray]) -> float:
    area = int(mask.sum())
    if not area:
        return 0.0
    hidden = np.zeros_like(mask)
    for m in on_top:
        hidden |= m
    return float((mask & ~hidden).sum()) / area


def _occluder(rng: np.random.Generator, size: int, near: tuple[int, int, int, int] | None) -> np.ndarray:
    """Alpha (0..1) of a bar or a blob, placed over part of the box ``near`` when given."""
    s = 2
    if near is not None:
        x, y = rng.uniform(near[0], near[2]), rng.uniform(near[1], near[3])
    else:
        x, y = rng.uniform(0, size), rng.uniform(0, size)
    layer = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(layer)
    k = size / 160
    if rng.random() < 0.6:
        a, length = rng.uniform(0, math.pi), rng.uniform(0.25, 1.0) * size
        dx, dy = 0.5 * length * math.cos(a), 0.5 * length * math.sin(a)
        draw.line([(x - dx) * s, (y - dy) * s, (x + dx) * s, (y + dy) * s], fill=255,
                  width=max(2, int(rng.uniform(3, 9) * k * s)))
    else:
        # an irregular blob (radii jittered hard, so it never looks like one of the classes)
        m = int(rng.integers(7, 12))
        t = np.sort(rng.uniform(0, 2 * math.pi, m))
        r = rng.uniform(5, 14) * k * rng.uniform(0.35, 1.0, m)
        draw.polygon([((x + ri * math.cos(ti)) * s, (y + ri * math.sin(ti)) * s) for ri, ti in zip(r, t)],
                     fill=255)
    return np.asarray(layer.resize((size, size), Image.BOX), np.float32) / 255.0


# --------------------------------------------------------------------------- one image

# label, box (x0, y0, x1, y1), mask in the image, alpha patch, patch position (x, y)
_Placed = tuple[int, tuple[int, int, int, int], np.ndarray, np.ndarray, tuple[int, int]]


def draw_image(rng: np.random.Generator, cfg: GeneratorConfig) -> DrawnImage:
    """Draw one image and its boxes. Deterministic given the Generator's state."""
    size = cfg.image_size
    canvas = _background(rng, size, cfg.texture, cfg.max_clutter)
    plain = canvas.copy()
    placed = _place_objects(rng, cfg)
    for obj in placed:
        _paint_object(rng, cfg, canvas, plain, obj)
    canvas, visible = _add_occluders(rng, cfg, canvas, placed)
    jpeg = _photograph(rng, cfg, canvas)
    return DrawnImage(jpeg, [tuple(float(v) for v in p[1]) for p in placed],
                      [p[0] for p in placed], [round(v, 4) for v in visible])


def _clip(x: int, y: int, pn: int, size: int) -> tuple[int, int, int, int]:
    """The part (x0, y0, x1, y1) of a ``pn``-pixel patch at (x, y) that lies inside the image."""
    return max(0, x), max(0, y), min(size, x + pn), min(size, y + pn)


def _place_objects(rng: np.random.Generator, cfg: GeneratorConfig) -> list[_Placed]:
    """Choose the objects and where they go (up to 15 tries each; an object may be dropped)."""
    placed: list[_Placed] = []
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    for _ in range(n):
        for _attempt in range(15):
            obj = _try_place(rng, cfg, placed)
            if obj is not None:
                placed.append(obj)
                break
    return placed


def _try_place(rng: np.random.Generator, cfg: GeneratorConfig, placed: list[_Placed]) -> _Placed | None:
    """One random object and position; None when it leaves the image, overlaps or hides too much."""
    size = cfg.image_size
    label = int(rng.integers(1, len(cfg.classes) + 1))
    side = rng.uniform(cfg.min_size, cfg.max_size) * (size / 160.0)
    patch = _shape_patch(cfg.classes[label - 1], side, rng)
    pb = _tight_box(patch >= 0.5)
    if pb is None or pb[2] - pb[0] > size or pb[3] - pb[1] > size:
        return None
    x = int(rng.integers(-pb[0], size - pb[2] + 1))
    y = int(rng.integers(-pb[1], size - pb[3] + 1))
    box = (x + pb[0], y + pb[1], x + pb[2], y + pb[3])
    if any(_iou(box, p[1]) > cfg.max_overlap_iou for p in placed):
        return None
    full = np.zeros((size, size), bool)
    cx0, cy0, cx1, cy1 = _clip(x, y, patch.shape[0], size)
    full[cy0:cy1, cx0:cx1] = patch[cy0 - y:cy1 - y, cx0 - x:cx1 - x] >= 0.5
    masks = [p[2] for p in placed]
    if any(_visible(m, masks[i + 1:] + [full]) < cfg.min_visible for i, m in enumerate(masks)):
        return None
    return label, box, full, patch, (x, y)


def _paint_object(rng: np.random.Generator, cfg: GeneratorConfig, canvas: np.ndarray, plain: np.ndarray,
                  obj: _Placed) -> None:
    """Paint one object onto ``canvas`` in a colour that contrasts with the background, shaded."""
    _label, box, full, patch, (x, y) = obj
    cx0, cy0, cx1, cy1 = _clip(x, y, patch.shape[0], cfg.image_size)
    alpha = patch[cy0 - y:cy1 - y, cx0 - x:cx1 - x]
    under = plain[full].mean(0)
    colour = _colour(rng, (0.3, 1.0), (0.25, 1.0))
    for _ in range(30):
        if np.linalg.norm(colour - under) >= cfg.min_contrast:
            break
        colour = _colour(rng, (0.3, 1.0), (0.25, 1.0))
    yy, xx = np.mgrid[cy0:cy1, cx0:cx1].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    span = max(box[2] - box[0], box[3] - box[1])
    shade = 1.0 + rng.uniform(0.0, 0.3) * (((xx - (box[0] + box[2]) / 2) * math.cos(theta)
                                             + (yy - (box[1] + box[3]) / 2) * math.sin(theta)) / span)
    fill = colour * shade[..., None]
    if rng.random() < 0.3:  # a darker outline
        inner = np.asarray(Image.fromarray((alpha * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(3)),
                           np.float32) / 255.0
        edge = (alpha - inner)[..., None]
        fill = fill * (1 - edge) + colour * rng.uniform(0.3, 0.6) * edge
    a3 = alpha[..., None]
    region = canvas[cy0:cy1, cx0:cx1]
    canvas[cy0:cy1, cx0:cx1] = region * (1 - a3) + fill * a3


def _add_occluders(rng: np.random.Generator, cfg: GeneratorConfig, canvas: np.ndarray,
                   placed: list[_Placed]) -> tuple[np.ndarray, list[float]]:
    """Occluders over part of an object, never hiding too much of any; the canvas and each
    object's visible fraction."""
    masks = [p[2] for p in placed]
    covers: list[np.ndarray] = []
    n_occ = int(rng.random() < cfg.occlusion_prob) + int(rng.random() < cfg.occlusion_prob / 3)
    for _ in range(n_occ):
        for _attempt in range(6):
            near = placed[int(rng.integers(0, len(placed)))][1] if placed and rng.random() < 0.8 else None
            occ = _occluder(rng, cfg.image_size, near)
            cover = occ >= 0.5
            if all(_visible(m, masks[i + 1:] + covers + [cover]) >= cfg.min_visible for i, m in enumerate(masks)):
                covers.append(cover)
                texture = 1.0 + 0.2 * (_smooth_noise(rng, cfg.image_size, 10) - 0.5)
                paint = _colour(rng, (0.0, 0.7), (0.1, 0.95)) * texture[..., None]
                canvas = canvas * (1 - occ[..., None]) + paint * occ[..., None]
                break
    return canvas, [_visible(m, masks[i + 1:] + covers) for i, m in enumerate(masks)]


def _photograph(rng: np.random.Generator, cfg: GeneratorConfig, canvas: np.ndarray) -> bytes:
    """Lighting (global gain, a linear gradient, gamma), then blur and sensor noise; the JPEG bytes."""
    size = cfg.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, 2 * math.pi)
    gradient = 1.0 + rng.uniform(0, 0.5) * ((xx - 0.5) * math.cos(theta) + (yy - 0.5) * math.sin(theta))
    canvas *= (np.float32(rng.uniform(0.6, 1.3)) * gradient)[..., None]
    gamma = rng.uniform(0.8, 1.25)
    lut = [int(255.0 * (v / 255.0) ** gamma + 0.5) for v in range(256)] * 3
    np.clip(canvas, 0, 255, out=canvas)
    out = Image.fromarray((canvas + 0.5).astype(np.uint8)).point(lut)
    if rng.random() < cfg.blur_prob:
        out = out.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.4, cfg.max_blur)) * (size / 160.0)))
    sigma = np.float32(rng.uniform(1.0, cfg.max_noise))
    noisy = np.asarray(out, np.float32) + rng.standard_normal((size, size, 3), dtype=np.float32) * sigma
    np.clip(noisy + 0.5, 0, 255, out=noisy)
    out = Image.fromarray(noisy.astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=cfg.jpeg_quality, subsampling=2, optimize=False)
    return buf.getvalue()
