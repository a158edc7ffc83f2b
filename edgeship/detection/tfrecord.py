"""TFRecord files and tf.train.Example records.

Writing: ``encode_example`` builds a ``tf.train.Example`` and serializes it with
``SerializeToString(deterministic=True)``: the feature map is written sorted by key, so the same
data gives the same bytes (and dataset fingerprints) in every process. A plain
``SerializeToString()`` does not promise that order. ``frame`` adds the TFRecord framing.

Sharding: ``ShardWriter`` writes a split as ``tfrecord/{split}-{i:05d}-of-{n:05d}.tfrecord``,
closing a shard at ``SHARD_MAX_EXAMPLES`` records or ``SHARD_MAX_BYTES`` bytes
(edgeship.contracts.dataset); the same records give the same shards, byte for byte.

Reading: ``iter_records`` (bytes) and ``iter_record_stream`` (an open file: one record in memory
at a time) check framing and CRCs; records are parsed with ``tf.train.Example.FromString`` by the
readers (tf.data reads the shards itself: edgeship.detection.stream).

Framing (TFRecord): uint64 length, uint32 masked crc32c(length), data, uint32 masked crc32c(data),
all little-endian.
"""
from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import google_crc32c

from edgeship.contracts import dataset as contract

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
    return iter_record_stream(io.BytesIO(data), where)


def iter_record_stream(stream: BinaryIO, where: str) -> Iterator[bytes]:
    """Yield the records read from an open binary file (local or a gs:// blob reader), one at a
    time, with the checks and errors of :func:`iter_records`."""
    pos, n = 0, 0
    while True:
        header = _read_exactly(stream, 12)
        if not header:
            return
        if len(header) < 12:
            raise ValueError(f"{where}: truncated record header at byte {pos} (record {n})")
        length_bytes = header[:8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack("<I", header[8:12])
        if length_crc != _masked_crc(length_bytes):
            raise ValueError(f"{where}: corrupt record {n} at byte {pos} (length checksum mismatch)")
        body = _read_exactly(stream, length + 4)
        if len(body) < length + 4:
            raise ValueError(f"{where}: truncated record {n} at byte {pos}")
        record = body[:length]
        (data_crc,) = struct.unpack("<I", body[length:])
        if data_crc != _masked_crc(record):
            raise ValueError(f"{where}: corrupt record {n} at byte {pos} (data checksum mismatch)")
        yield record
        pos += 12 + length + 4
        n += 1


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes (fewer only at the end of the file), across short reads."""
    parts, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


class ShardWriter:
    """Write one split's records into shards under ``root`` (the dataset directory).

    A shard is closed at ``max_examples`` records or once it holds ``max_bytes`` (defaults: the
    contract's SHARD_MAX_EXAMPLES / SHARD_MAX_BYTES); shards are written as ``.part`` files and
    renamed to ``tfrecord/{split}-{i:05d}-of-{n:05d}.tfrecord`` by :meth:`close`, which returns
    their relative paths (dataset.json's ``splits.{split}.shards``). A split without records
    still gets one (empty) shard. Use as a context manager; an error leaves only ``.part`` files,
    which the writers' callers remove with the tfrecord/ folder.
    """

    def __init__(self, root: str | Path, split: str, *, max_examples: int | None = None,
                 max_bytes: int | None = None):
        self.root, self.split = Path(root), split
        self.max_examples = int(max_examples or contract.SHARD_MAX_EXAMPLES)
        self.max_bytes = int(max_bytes or contract.SHARD_MAX_BYTES)
        (self.root / contract.TFRECORD_DIR).mkdir(parents=True, exist_ok=True)
        self._parts: list[Path] = []
        self._file: BinaryIO | None = None
        self._records = self._bytes = 0
        self.shards: list[str] = []

    def write(self, record: bytes) -> None:
        """Append one serialized record (framed here), opening a new shard when the current one is full."""
        if self._file is None or self._records >= self.max_examples or self._bytes >= self.max_bytes:
            self._open_next()
        framed = frame(record)
        self._file.write(framed)
        self._records += 1
        self._bytes += len(framed)

    def _open_next(self) -> None:
        if self._file is not None:
            self._file.close()
        part = self.root / contract.TFRECORD_DIR / f".{self.split}-{len(self._parts):05d}.part"
        self._parts.append(part)
        self._file = open(part, "wb")
        self._records = self._bytes = 0

    def close(self) -> list[str]:
        """Finish the last shard and give every shard its final name; returns the relative paths."""
        if self._file is None:
            self._open_next()
        self._file.close()
        count = len(self._parts)
        self.shards = [contract.shard_name(self.split, i, count) for i in range(count)]
        for part, rel in zip(self._parts, self.shards):
            os.replace(part, self.root / rel)
        return self.shards

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._file is not None:
            self._file.close()
