"""Small datasets in the formats users bring, written by the tests themselves (PIL, json, xml,
TensorFlow's own TFRecord writer): COCO with category ids {0, 3, 90} and a crowd region, Pascal
VOC (LabelImg layout), TF OD API TFRecords + label_map.pbtxt, and images of every kind."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COCO_CATEGORIES = [{"id": 0, "name": "person", "supercategory": "thing"},
                   {"id": 3, "name": "car", "supercategory": "thing"},
                   {"id": 90, "name": "toothbrush", "supercategory": "thing"}]
COLOURS = {0: (220, 40, 40), 3: (40, 200, 40), 90: (40, 40, 220), "dog": (220, 40, 40),
           "cat": (40, 40, 220), 2: (220, 40, 40), 7: (40, 200, 40)}
BACKGROUND = (128, 128, 128)


def picture(width: int, height: int, rects, background=BACKGROUND) -> Image.Image:
    """An RGB image with filled rectangles [(x0, y0, x1, y1, colour)] (x1, y1 exclusive)."""
    img = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(img)
    for x0, y0, x1, y1, colour in rects:
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=colour)
    return img


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}), **kwargs)
    return buf.getvalue()


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# COCO: ids {0, 3, 90}, a crowd region, nested folders, a missing width/height, train + val


def coco_objects(i: int) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(category id, (x, y, w, h)) of train/val image i: every class shows up."""
    cats = [0, 3, 90]
    out = [(cats[i % 3], (4 + 2 * i, 6, 20, 16))]
    if i % 2 == 0:
        out.append((cats[(i + 1) % 3], (36, 20 + i, 18, 14)))
    return out


def write_coco(root: Path, *, train: int = 9, val: int = 6, crowd: bool = True) -> Path:
    """annotations/instances_{train,val}.json + images/{train,val}/sub*/...; returns root."""
    ann_id = 100
    for split, count, ext in (("train", train, "jpg"), ("val", val, "png")):
        images, annotations = [], []
        for i in range(count):
            objs = coco_objects(i)
            rects = [(x, y, x + w, y + h, COLOURS[c]) for c, (x, y, w, h) in objs]
            file_name = f"sub{i % 2}/{split}_{i}.{ext}"
            _write(root / "images" / split / file_name,
                   encode(picture(64, 48, rects), "JPEG" if ext == "jpg" else "PNG"))
            entry = {"id": 1000 + i if split == "train" else 5000 + i, "file_name": file_name,
                     "width": 64, "height": 48}
            if split == "train" and i == 1:
                del entry["width"], entry["height"]          # read from the file
            images.append(entry)
            for cat, box in objs:
                ann_id += 7
                annotations.append({"id": ann_id, "image_id": entry["id"], "category_id": cat,
                                    "bbox": list(box), "area": box[2] * box[3], "iscrowd": 0})
        if crowd and split == "train":
            ann_id += 7
            annotations.append({"id": ann_id, "image_id": images[0]["id"], "category_id": 3,
                                "bbox": [40, 2, 20, 10], "area": 200, "iscrowd": 1,
                                "segmentation": {"counts": [0, 200], "size": [48, 64]}})
        doc = {"info": {}, "images": images, "annotations": annotations,
               "categories": COCO_CATEGORIES}
        _write(root / "annotations" / f"instances_{split}.json", json.dumps(doc))
    return root


def edit_json(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


# ---------------------------------------------------------------------------------------------
# Pascal VOC (LabelImg): Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/{train,val}.txt


def voc_xml(filename: str, width: int | None, height: int | None, objects) -> str:
    size = "" if width is None else (f"<size><width>{width}</width><height>{height}</height>"
                                     "<depth>3</depth></size>")
    objs = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1), difficult in objects)
    return (f"<annotation><folder>JPEGImages</folder><filename>{filename}</filename>"
            f"<path>/home/me/{filename}</path>{size}<segmented>0</segmented>{objs}</annotation>")


def voc_objects(i: int) -> list:
    out = [("dog" if i % 2 else "cat", (5 + i, 4, 30 + i, 28), False)]
    if i % 3 == 0:
        out.append(("cat", (40, 10, 70, 40), i == 3))    # one difficult object (image 3)
    return out


def write_voc(root: Path, *, count: int = 10, image_sets: bool = True,
              sizeless: tuple[int, ...] = ()) -> Path:
    stems = []
    for i in range(count):
        stem = f"img_{i:03d}"
        stems.append(stem)
        objs = voc_objects(i)
        rects = [(*box, COLOURS[name]) for name, box, _ in objs]
        _write(root / "JPEGImages" / f"{stem}.jpg", encode(picture(80, 50, rects)))
        w, h = (None, None) if i in sizeless else (80, 50)
        _write(root / "Annotations" / f"{stem}.xml", voc_xml(f"{stem}.jpg", w, h, objs))
    if image_sets:
        _write(root / "ImageSets/Main/train.txt", "\n".join(stems[: count - 3]) + "\n")
        _write(root / "ImageSets/Main/val.txt", "\n".join(stems[count - 3:]) + "\n")
    return root


# ---------------------------------------------------------------------------------------------
# TF OD API: train.record + val.record written by TensorFlow, label_map.pbtxt with ids {2, 7}

LABEL_MAP = """# written by hand, as users do
item {
  id: 2
  name: 'apple'
  display_name: "Apple"
}
item: {
  name: "pear"
  id: 7
  keypoints { id: 0 label: "stem" }
}
"""
TFOD_NAMES = {2: "apple", 7: "pear"}


def tfod_objects(i: int) -> list[tuple[int, tuple[float, float, float, float]]]:
    """(label, normalized (xmin, ymin, xmax, ymax)) of record i."""
    out = [(2 if i % 2 else 7, (0.1, 0.2, 0.4 + 0.02 * i, 0.6))]
    if i % 2 == 0:
        out.append((2, (0.55, 0.1, 0.9, 0.5)))
    return out


def tfod_record(i: int, *, texts=None, fmt: str = "JPEG", labels=None) -> bytes:
    from edgeship.base.tfcompat import tf

    width, height = 60, 40
    objs = tfod_objects(i)
    rects = [(round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height),
              COLOURS[c]) for c, (x0, y0, x1, y1) in objs]
    data = encode(picture(width, height, rects), fmt)

    def feat(kind, values):
        if kind == "bytes":
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if kind == "float":
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    labels = labels if labels is not None else [c for c, _ in objs]
    texts = texts if texts is not None else [TFOD_NAMES.get(c, "?").encode() for c in labels]
    feature = {
        "image/encoded": feat("bytes", [data]), "image/format": feat("bytes", [fmt.lower().encode()]),
        "image/height": feat("int64", [height]), "image/width": feat("int64", [width]),
        "image/filename": feat("bytes", [f"fruit_{i}.{fmt.lower()}".encode()]),
        "image/source_id": feat("bytes", [f"fruit_{i}".encode()]),
        "image/object/bbox/xmin": feat("float", [b[0] for _, b in objs]),
        "image/object/bbox/ymin": feat("float", [b[1] for _, b in objs]),
        "image/object/bbox/xmax": feat("float", [b[2] for _, b in objs]),
        "image/object/bbox/ymax": feat("float", [b[3] for _, b in objs]),
        "image/object/class/label": feat("int64", labels),
        "image/object/class/text": feat("bytes", texts),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_tfod(root: Path, *, train: int = 8, val: int = 4, records=None) -> Path:
    from edgeship.base.tfcompat import tf

    root.mkdir(parents=True, exist_ok=True)
    _write(root / "label_map.pbtxt", LABEL_MAP)
    for split, count, offset in (("train", train, 0), ("val", val, 100)):
        with tf.io.TFRecordWriter(str(root / f"{split}.record")) as writer:
            for i in range(count):
                record = (records or {}).get((split, i)) or \
                    tfod_record(offset + i, fmt="PNG" if i == 1 else "JPEG")
                writer.write(record)
    return root


# ---------------------------------------------------------------------------------------------
# Images of every kind, in one COCO file (a single split: val and calibration are carved)


def mask_box(img: Image.Image, colour, tol: int = 40) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) (exclusive) of the pixels near ``colour``: where PIL shows the object."""
    arr = np.asarray(img.convert("RGB"), np.int32)
    near = (np.abs(arr - np.array(colour)).max(-1) <= tol)
    ys, xs = np.nonzero(near)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def image_zoo() -> list[dict]:
    """Each entry: name, bytes, the size the annotation declares (None = absent), the box as
    drawn on the displayed image, the colour (RGB as the artifact will show it)."""
    red, box = (220, 40, 40), (10, 8, 40, 30)
    zoo = []
    base = picture(64, 48, [(*box, red)])
    zoo.append(dict(name="rgb.jpg", data=encode(base), size=(64, 48), box=box, colour=red))
    gray = base.convert("L")
    zoo.append(dict(name="gray.jpg", data=encode(gray), size=(64, 48), box=box,
                    colour=(gray.getpixel((20, 20)),) * 3))
    rgba = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).rectangle([10, 8, 39, 29], fill=red + (255,))
    zoo.append(dict(name="rgba.png", data=encode(rgba, "PNG"), size=(64, 48), box=box, colour=red))
    arr = np.full((48, 64), 20000, np.uint16)
    arr[8:30, 10:40] = 60000
    zoo.append(dict(name="gray16.png", data=encode(Image.fromarray(arr), "PNG"), size=(64, 48),
                    box=box, colour=(233, 233, 233)))
    cmyk = Image.new("CMYK", (64, 48), (0, 0, 0, 127))
    ImageDraw.Draw(cmyk).rectangle([10, 8, 39, 29], fill=(0, 210, 210, 35))
    zoo.append(dict(name="cmyk.jpg", data=encode(cmyk), size=(64, 48), box=box,
                    colour=cmyk.convert("RGB").getpixel((20, 20))))
    wide = picture(160, 40, [(100, 5, 150, 35, red)])
    zoo.append(dict(name="wide.jpg", data=encode(wide), size=(160, 40), box=(100, 5, 150, 35),
                    colour=red))
    tall = picture(30, 90, [(5, 50, 25, 80, red)])
    zoo.append(dict(name="tall.png", data=encode(tall, "PNG"), size=(30, 90), box=(5, 50, 25, 80),
                    colour=red))
    # a phone photo: stored 48 wide x 64 high, EXIF 6 turns it to 64x48 as displayed; the
    # annotation tool showed it upright (declared 64x48, box on the displayed image)
    shown = picture(64, 48, [(*box, red)])
    stored = shown.transpose(Image.Transpose.ROTATE_90)
    zoo.append(dict(name="exif6.jpg", data=encode(stored, exif=_exif(6)), size=(64, 48), box=box,
                    colour=red))
    # the same photo annotated on the stored pixels (declared 48x64, box in the stored frame)
    raw_box = mask_box(stored, red)
    zoo.append(dict(name="exif6_raw.jpg", data=encode(stored, exif=_exif(6)), size=(48, 64),
                    box=raw_box, colour=red, displayed_box=mask_box(shown, red)))
    return zoo


def write_zoo(root: Path) -> tuple[Path, list[dict]]:
    zoo = image_zoo()
    images, annotations = [], []
    for i, entry in enumerate(zoo):
        _write(root / "pics" / entry["name"], entry["data"])
        img = {"id": i, "file_name": entry["name"]}
        if entry["size"]:
            img["width"], img["height"] = entry["size"]
        images.append(img)
        x0, y0, x1, y1 = entry["box"]
        annotations.append({"id": i + 1, "image_id": i, "category_id": 1,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})
    doc = {"images": images, "annotations": annotations,
           "categories": [{"id": 1, "name": "thing"}]}
    _write(root / "labels.json", json.dumps(doc))
    return root, zoo
