"""Any image a user brings, made into what the artifact holds (an 8-bit RGB JPEG, EXIF orientation
applied), and the resize policies that bring an image and its boxes to the model's input.

Decoding: JPEG, PNG (and whatever else Pillow reads); grayscale, palette, RGBA/LA (composited
over white), CMYK, 16-bit (I;16: scaled by 1/257), 32-bit integer and float modes. The EXIF
orientation tag is applied (as photo viewers and annotation tools that show the photo upright
do). Kept byte for byte when nothing has to change: an RGB or grayscale JPEG without an
orientation to apply and within ``max_side``; else re-encoded as JPEG, quality 95.

Resize policies (dataset.json ``resize.policy``; docs/contracts.md):
- ``stretch``: scale each axis to the input size (aspect ratio not kept), PIL bilinear: what
  training has always done.
- ``letterbox``: scale by min(H/h, W/w) keeping the aspect ratio, centre, pad with ``fill``
  (114 gray); boxes move with the image and ``boxes_from_input`` maps detections back.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from edgeship.contracts.dataset import RESIZE_POLICIES

JPEG_QUALITY = 95
LETTERBOX_FILL = 114
ALPHA_BACKGROUND = (255, 255, 255)
EXIF_ORIENTATION = 0x0112
SWAPS_AXES = (5, 6, 7, 8)     # orientations that turn the image by 90°


@dataclass
class NormalizedImage:
    """An image as the artifact stores it, and what was done to it."""

    jpeg: bytes
    width: int                 # final, stored in the artifact
    height: int
    raw_size: tuple[int, int]  # (width, height) of the stored pixels, before EXIF orientation
    orientation: int           # EXIF orientation tag (1 = none)
    scale: float               # final / oriented (< 1 when shrunk to max_side)
    file_format: str           # "JPEG", "PNG", ...
    mode: str                  # Pillow mode as read: "RGB", "L", "RGBA", "CMYK", "I;16", ...
    reencoded: bool

    @property
    def oriented_size(self) -> tuple[int, int]:
        w, h = self.raw_size
        return (h, w) if self.orientation in SWAPS_AXES else (w, h)


def to_rgb(img) -> Image.Image:  # noqa: F821 (PIL imported lazily)
    """Any Pillow mode → 8-bit RGB: 16/32-bit scaled, alpha composited over white."""
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def normalize_image(data: bytes, where: str, *, max_side: int = 0) -> NormalizedImage:
    """Decode ``data`` and make the artifact's JPEG (see the module docstring). ``max_side`` > 0
    shrinks the longer side to it (aspect kept, Lanczos). Raises ValueError naming ``where`` for
    bytes Pillow cannot read."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            file_format, mode, raw_size = img.format or "?", img.mode, img.size
            orientation = int(img.getexif().get(EXIF_ORIENTATION, 1) or 1)
            if orientation not in range(1, 9):
                orientation = 1
            oriented = ImageOps.exif_transpose(img) if orientation != 1 else img
            rgb = to_rgb(oriented)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        raise ValueError(f"{where}: cannot decode image ({exc})") from exc
    w, h = rgb.size
    scale = 1.0
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = rgb.resize(size, Image.LANCZOS)
        scale = size[0] / w if w >= h else size[1] / h
    keep = file_format == "JPEG" and mode in ("RGB", "L") and orientation == 1 and scale == 1.0
    if keep:
        jpeg = data
    else:
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=JPEG_QUALITY)
        jpeg = buf.getvalue()
    return NormalizedImage(jpeg=jpeg, width=rgb.size[0], height=rgb.size[1], raw_size=raw_size,
                           orientation=orientation, scale=scale, file_format=file_format,
                           mode=mode, reencoded=not keep)


def orient_boxes(boxes: np.ndarray, orientation: int, raw_size: tuple[int, int]) -> np.ndarray:
    """(x0, y0, x1, y1) pixel boxes drawn on the stored pixels → the same boxes on the image with
    its EXIF orientation applied (what ``ImageOps.exif_transpose`` shows)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = raw_size
    x0, y0, x1, y1 = boxes.T
    maps = {
        1: (x0, y0, x1, y1),
        2: (w - x1, y0, w - x0, y1),            # mirrored left-right
        3: (w - x1, h - y1, w - x0, h - y0),    # turned 180°
        4: (x0, h - y1, x1, h - y0),            # mirrored top-bottom
        5: (y0, x0, y1, x1),                    # transposed
        6: (h - y1, x0, h - y0, x1),            # turned 90° clockwise
        7: (h - y1, w - x1, h - y0, w - x0),    # transversed
        8: (y0, w - x1, y1, w - x0),            # turned 90° counter-clockwise
    }
    return np.stack(maps.get(orientation, maps[1]), 1)


# ---------------------------------------------------------------------------------------------
# Resize policies


@dataclass(frozen=True)
class ResizeTransform:
    """Where the source image lands in the input: scaled to (new_h, new_w) at (top, left)."""

    src_size: tuple[int, int]      # (h, w)
    dst_size: tuple[int, int]      # (H, W)
    new_size: tuple[int, int]      # (h', w') of the scaled image inside the input
    offset: tuple[int, int]        # (top, left) padding


def resize_transform(src_size, dst_size, policy: str) -> ResizeTransform:
    """The placement of a (h, w) image in a (H, W) input under ``policy``."""
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"unknown resize policy {policy!r}; expected one of {list(RESIZE_POLICIES)}")
    (h, w), (dh, dw) = (int(v) for v in src_size), (int(v) for v in dst_size)
    if policy == "stretch":
        return ResizeTransform((h, w), (dh, dw), (dh, dw), (0, 0))
    s = min(dh / h, dw / w)
    nh, nw = max(1, min(dh, round(h * s))), max(1, min(dw, round(w * s)))
    return ResizeTransform((h, w), (dh, dw), (nh, nw), ((dh - nh) // 2, (dw - nw) // 2))


def resize_image(image: np.ndarray, dst_size, policy: str = "stretch",
                 fill: int = LETTERBOX_FILL) -> tuple[np.ndarray, ResizeTransform]:
    """uint8 [h, w, 3] → uint8 [H, W, 3] under ``policy`` (PIL bilinear), and its transform.
    ``stretch`` is exactly what training did before there were policies."""
    from PIL import Image

    image = np.asarray(image, np.uint8)
    t = resize_transform(image.shape[:2], dst_size, policy)
    (nh, nw), (top, left), (dh, dw) = t.new_size, t.offset, t.dst_size
    scaled = image if image.shape[:2] == (nh, nw) else \
        np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    if (nh, nw) == (dh, dw):
        return scaled, t
    out = np.full((dh, dw, 3), fill, np.uint8)
    out[top:top + nh, left:left + nw] = scaled
    return out, t


def boxes_to_input(boxes: np.ndarray, t: ResizeTransform) -> np.ndarray:
    """Normalized (ymin, xmin, ymax, xmax) boxes on the source image → normalized on the input."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    (nh, nw), (top, left), (dh, dw) = t.new_size, t.offset, t.dst_size
    scale = np.array([nh / dh, nw / dw, nh / dh, nw / dw])
    shift = np.array([top / dh, left / dw, top / dh, left / dw])
    return (b * scale + shift).astype(np.float32)


def boxes_from_input(boxes: np.ndarray, t: ResizeTransform) -> np.ndarray:
    """Normalized boxes on the model input (detections) → normalized on the source image, clipped."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    (nh, nw), (top, left), (dh, dw) = t.new_size, t.offset, t.dst_size
    scale = np.array([nh / dh, nw / dw, nh / dh, nw / dw])
    shift = np.array([top / dh, left / dw, top / dh, left / dw])
    return np.clip((b - shift) / scale, 0.0, 1.0).astype(np.float32)


def box_side_at_input(width_px: float, height_px: float, image_size, input_size,
                      policy: str) -> tuple[float, float]:
    """(width, height) in input pixels of a box of (width_px, height_px) on an image of
    (h, w) = ``image_size``, after resizing to ``input_size`` under ``policy``."""
    t = resize_transform(image_size, input_size, policy)
    (h, w), (nh, nw) = t.src_size, t.new_size
    return width_px * nw / w, height_px * nh / h
