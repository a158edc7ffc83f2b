"""TFRecord files and tf.train.Example records, written and framed without TensorFlow.

Why by hand: ``tf.train.Example.SerializeToString()`` writes the feature map in an order that
changes from process to process, so the same data gave different bytes (and fingerprints) on
every run. Here the features are written sorted by key: identical bytes for identical data.
TensorFlow reads the result (the readers' tests parse it with ``tf.train.Example``).

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


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 -> two's complement, 10 bytes
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _feature(kind: str, values: FeatureValue) -> bytes:
    if kind == "bytes":
        body = b"".join(_field(1, bytes(v)) for v in values)
        return _field(1, body)
    if kind == "float":
        packed = struct.pack(f"<{len(values)}f", *values)
        return _field(2, _field(1, packed) if values else b"")
    if kind == "int64":
        packed = b"".join(_varint(int(v)) for v in values)
        return _field(3, _field(1, packed) if values else b"")
    raise ValueError(f"unknown feature kind {kind!r}; expected bytes, float or int64")


def encode_example(features: dict[str, tuple[str, FeatureValue]]) -> bytes:
    """Serialize a tf.train.Example from {key: (kind, values)}, kind in bytes/float/int64.

    Keys are written in sorted order, so equal inputs give equal bytes.
    """
    entries = b"".join(
        _field(1, _field(1, key.encode()) + _field(2, _feature(*features[key])))
        for key in sorted(features))
    return _field(1, entries)


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
