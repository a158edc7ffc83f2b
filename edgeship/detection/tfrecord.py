"""TFRecord files and tf.train.Example records.

Writing: ``encode_example`` builds a ``tf.train.Example`` and serializes it with
``SerializeToString(deterministic=True)``: the feature map is written sorted by key, so the same
data gives the same bytes (and dataset fingerprints) in every process. A plain
``SerializeToString()`` does not promise that order. ``frame`` adds the TFRecord framing.

Reading: ``iter_records`` checks framing and CRCs; records are parsed with
``tf.train.Example.FromString`` by the readers.

Framing (TFRecord): uint64 length, uint32 masked crc32c(length), data, uint32 masked crc32c(data),
all little-endian.
"""
from __future__ import annotations

import struct
from typing import Iterator, Sequence

import google_crc32c

FeatureValue = Sequence[bytes] | Sequence[float] | Sequence[int]


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def encode_example(features: dict[str, tuple[str, FeatureValue]]) -> bytes:
    """Serialize a tf.train.Example from {key: (kind, values)}, kind in bytes/float/int64.

    Deterministic serialization (map entries sorted by key): equal inputs give equal bytes.
    """
    from edgeship.base.tfcompat import tf

    example = tf.train.Example()
    for key in sorted(features):
        kind, values = features[key]
        feature = example.features.feature[key]
        if kind == "bytes":
            feature.bytes_list.SetInParent()
            feature.bytes_list.value.extend(bytes(v) for v in values)
        elif kind == "float":
            feature.float_list.SetInParent()
            feature.float_list.value.extend(float(v) for v in values)
        elif kind == "int64":
            feature.int64_list.SetInParent()
            feature.int64_list.value.extend(int(v) for v in values)
        else:
            raise ValueError(f"unknown feature kind {kind!r} for {key!r}; expected bytes, float or int64")
    return example.SerializeToString(deterministic=True)


def detection_example(image_id: object, file_name: str, jpeg: bytes, height: int, width: int,
                      boxes_px, labels, names, *, is_crowd=None, difficult=None) -> bytes:
    """One serialized tf.train.Example with the TF Object Detection API keys (docs/contracts.md).

    boxes_px: (x0, y0, x1, y1) pixels; labels: class ids 1..K (``names[id - 1]`` is the text);
    is_crowd / difficult: per-object flags, written as image/object/is_crowd and
    image/object/difficult when given (imported datasets always give them).
    """
    features = {
        "image/encoded": ("bytes", [jpeg]),
        "image/format": ("bytes", [b"jpeg"]),
        "image/height": ("int64", [height]),
        "image/width": ("int64", [width]),
        "image/filename": ("bytes", [file_name.encode()]),
        "image/source_id": ("bytes", [str(image_id).encode()]),
        "image/object/bbox/xmin": ("float", [b[0] / width for b in boxes_px]),
        "image/object/bbox/ymin": ("float", [b[1] / height for b in boxes_px]),
        "image/object/bbox/xmax": ("float", [b[2] / width for b in boxes_px]),
        "image/object/bbox/ymax": ("float", [b[3] / height for b in boxes_px]),
        "image/object/class/label": ("int64", list(labels)),
        "image/object/class/text": ("bytes", [names[i - 1].encode() for i in labels]),
    }
    if is_crowd is not None:
        features["image/object/is_crowd"] = ("int64", [int(bool(v)) for v in is_crowd])
    if difficult is not None:
        features["image/object/difficult"] = ("int64", [int(bool(v)) for v in difficult])
    return encode_example(features)


def frame(record: bytes) -> bytes:
    """One record in TFRecord framing."""
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", _masked_crc(length)) + record + struct.pack("<I", _masked_crc(record))


def iter_records(data: bytes, where: str) -> Iterator[bytes]:
    """Yield the records of a TFRecord file's bytes, checking lengths and CRCs.

    A truncated or corrupt file raises ValueError naming ``where``, the record and the byte offset.
    """
    pos, n = 0, 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError(f"{where}: truncated record header at byte {pos} (record {n})")
        length_bytes = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if length_crc != _masked_crc(length_bytes):
            raise ValueError(f"{where}: corrupt record {n} at byte {pos} (length checksum mismatch)")
        start = pos + 12
        end = start + length
        if end + 4 > len(data):
            raise ValueError(f"{where}: truncated record {n} at byte {pos}")
        record = data[start:end]
        (data_crc,) = struct.unpack("<I", data[end:end + 4])
        if data_crc != _masked_crc(record):
            raise ValueError(f"{where}: corrupt record {n} at byte {pos} (data checksum mismatch)")
        yield record
        pos = end + 4
        n += 1
