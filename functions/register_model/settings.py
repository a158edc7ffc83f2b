"""Limits, name patterns and configuration (MODEL_BUCKET, time bounds) of the function."""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, DeadlineExceeded

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")


EVENT_TYPE = "google.cloud.storage.object.v1.finalized"


SOURCE_PREFIX = "//storage.googleapis.com/projects/_/buckets/"


MANIFEST_NAME = "manifest.json"


MAX_MANIFEST_BYTES = 256 * 1024        # a real manifest is a few KB


MAX_JSON_DEPTH = 16                    # a valid manifest nests 3 deep


MAX_OBJECT_NAME_BYTES = 1024           # Cloud Storage's own limit


MAX_EVENT_ID_CHARS = 256


MAX_EVENT_AGE_S = 24 * 3600            # Eventarc stops retrying after 24 h; drop anything older


MAX_EVENT_SKEW_S = 3600                # an event from further in the future is malformed


MAX_SAFE_INT = 2 ** 53 - 1             # manifest integers: I-JSON (RFC 7493) interoperable range


HASH_CHUNK_BYTES = 8 * 1024 * 1024


NAME_RE = re.compile(r"^(?!.*\.\.)[a-z0-9][a-z0-9._-]{0,62}$")


FILE_RE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")   # the schema's file path


BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


UINT_RE = re.compile(r"^(0|[1-9][0-9]{0,18})$")


CREATED_AT_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
                           r"(?:\.[0-9]{1,6})?Z$")


# Defaults of the tunables (env REGISTER_MODEL_<NAME>); each is checked when an event arrives.
FIRESTORE_TIMEOUT_S = 10.0             # per Firestore call, retries included


STORAGE_TIMEOUT_S = 10.0               # per Cloud Storage call, retries included


DEADLINE_S = 40.0                      # the whole event; the function's timeout is 60 s


PENDING_WINDOW_S = 24 * 3600.0         # how long a manifest waits for late files


MAX_VERIFY_BYTES = 512 * 1024 * 1024   # listed files' total size the function will hash


@dataclass(frozen=True)
class Config:
    model_bucket: str
    firestore_timeout_s: float = FIRESTORE_TIMEOUT_S
    storage_timeout_s: float = STORAGE_TIMEOUT_S
    deadline_s: float = DEADLINE_S
    pending_window_s: float = PENDING_WINDOW_S
    max_verify_bytes: int = MAX_VERIFY_BYTES


def _env_number(key: str, default: float, lo: float, hi: float) -> float:
    raw = os.environ.get(f"REGISTER_MODEL_{key}")
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ConfigError(f"REGISTER_MODEL_{key}={raw!r} is not a number in [{lo:g}, {hi:g}]")
    return value


def load_config(model_bucket: str | None = None) -> Config:
    """The configuration from the environment; raises ConfigError (answered 500) if invalid."""
    bucket = model_bucket if model_bucket is not None else os.environ.get("MODEL_BUCKET", "")
    if not BUCKET_RE.match(bucket or ""):
        raise ConfigError(f"MODEL_BUCKET={bucket!r} is not a bucket name: set it to the bucket "
                          "whose releases this function registers")
    return Config(
        model_bucket=bucket,
        firestore_timeout_s=_env_number("FIRESTORE_TIMEOUT_S", FIRESTORE_TIMEOUT_S, 0.1, 60),
        storage_timeout_s=_env_number("STORAGE_TIMEOUT_S", STORAGE_TIMEOUT_S, 0.1, 60),
        deadline_s=_env_number("DEADLINE_S", DEADLINE_S, 1, 3600),
        pending_window_s=_env_number("PENDING_WINDOW_S", PENDING_WINDOW_S, 0, 30 * 86400),
        max_verify_bytes=int(_env_number("MAX_VERIFY_BYTES", MAX_VERIFY_BYTES, 0, 2 ** 40)))


class _Budget:
    """The event's time budget: every backend call gets min(its own cap, what is left)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def take(self, cap: float) -> float:
        left = self.end - time.monotonic()
        if left <= 0.05:
            raise DeadlineExceeded(f"the event's {self.seconds:g} s budget is spent")
        return min(cap, left)


INT64_MAX = 2 ** 63 - 1                # generation and size of an object (the JSON API's int64)


RFC3339_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                        r"(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$")
