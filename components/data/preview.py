"""A contact sheet of a split: images with their boxes and class names drawn on, as one PNG."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edgeship.contracts import dataset as dataset_contract
from edgeship.detection import dataset as dataset_reader

PALETTE = [(255, 64, 64), (64, 220, 64), (64, 128, 255), (255, 200, 0), (230, 64, 230),
           (0, 220, 220), (255, 128, 0), (160, 160, 160)]


def save_grid(uri: str | Path, out_png: str | Path, *, split: str = "train", count: int = 16,
              fmt: str = "coco", scale: int = 2) -> Path:
    """Draw the first ``count`` images of ``split`` with their boxes into ``out_png``; return it.
    Only those images are read (streamed), whatever the split's size."""
    import itertools

    info = dataset_contract.read_dataset_info(uri)
    names = info.class_names
    examples = list(itertools.islice(dataset_reader.iter_split(uri, split, fmt), max(1, int(count))))
    cols = math.ceil(math.sqrt(len(examples)))
    rows = math.ceil(len(examples) / cols)
    h, w = examples[0].image.shape[:2]
    sheet = Image.new("RGB", (cols * w * scale, rows * h * scale), (255, 255, 255))
    for k, ex in enumerate(examples):
        tile = Image.fromarray(ex.image).resize((w * scale, h * scale), Image.NEAREST)
        draw = ImageDraw.Draw(tile)
        for box, label in zip(ex.boxes, ex.labels):
            y0, x0, y1, x1 = (np.asarray(box) * [h * scale, w * scale, h * scale, w * scale]).tolist()
            colour = PALETTE[(int(label) - 1) % len(PALETTE)]
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=2)
            draw.text((x0 + 2, y0 + 1), names[int(label) - 1], fill=colour)
        sheet.paste(tile, ((k % cols) * w * scale, (k // cols) * h * scale))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
