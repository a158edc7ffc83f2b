"""Reading the manifest (that generation, bounded) and verifying every listed file from bytes the function hashes itself."""
from __future__ import annotations

import hashlib

from .clients import _gcs_opts, _storage
from .errors import Pending, Rejected
from .events import ObjectEvent
from .settings import HASH_CHUNK_BYTES, MAX_MANIFEST_BYTES, Config, _Budget
from .strict_manifest import parse_manifest, validate_manifest


def read_manifest(cfg: Config, budget: _Budget, bucket: str, name: str, generation: int) -> bytes:
    """That generation's bytes, at most MAX_MANIFEST_BYTES + 1 of them (raw, not transcoded)."""
    from google.api_core import exceptions as gexc

    blob = _storage().bucket(bucket).blob(name, generation=generation)
    try:
        return blob.download_as_bytes(start=0, end=MAX_MANIFEST_BYTES, raw_download=True,
                                      checksum=None, **_gcs_opts(cfg, budget))
    except gexc.NotFound:
        raise Rejected(f"manifest gs://{bucket}/{name} generation {generation} does not exist "
                       "(deleted or replaced)", "generation", generation) from None
    except gexc.RequestRangeNotSatisfiable:
        return b""


def _load_manifest(cfg: Config, budget: _Budget, obj: ObjectEvent, model: str, version: str) -> tuple[dict, bytes]:
    if obj.size > MAX_MANIFEST_BYTES:
        raise Rejected(f"manifest is {obj.size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit",
                       "size", obj.size)
    if obj.size == 0:
        raise Rejected("manifest is empty (0 bytes): not JSON", "size", obj.size)
    raw = read_manifest(cfg, budget, obj.bucket, obj.name, obj.generation)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise Rejected(f"manifest is over the {MAX_MANIFEST_BYTES}-byte limit", "size", obj.size)
    if len(raw) != obj.size:
        raise Rejected(f"event says the manifest has {obj.size} bytes, generation {obj.generation} "
                       f"has {len(raw)}", "size", obj.size)
    manifest = parse_manifest(raw)
    validate_manifest(manifest, model, version)
    return manifest, raw


def check_files(cfg: Config, budget: _Budget, bucket: str, model: str, version: str,
                manifest: dict) -> list[dict]:
    """Every listed file is in the version folder with the listed size (as Cloud Storage reports
    it) and sha256 (of the bytes read here). Raises Rejected, or Pending if files are missing."""
    from google.api_core import exceptions as gexc

    gcs_bucket = _storage().bucket(bucket)
    found, missing = [], []
    for i, entry in enumerate(manifest["files"]):
        name = f"models/{model}/{version}/{entry['path']}"
        blob = gcs_bucket.get_blob(name, **_gcs_opts(cfg, budget))
        if blob is None:
            missing.append((i, entry["path"]))
            continue
        if int(blob.size) != entry["size"]:
            raise Rejected(f"listed file {entry['path']!r} is {blob.size} bytes, manifest says {entry['size']}",
                           f"files/{i}/size", entry["size"])
        found.append((i, entry, blob))
    if missing:
        i, path = missing[0]
        raise Pending(f"listed file(s) {[p for _, p in missing]} not in gs://{bucket}/models/{model}/"
                      f"{version}/ yet: registers when they land (within {cfg.pending_window_s:g} s)",
                      f"files/{i}/path", path)
    total = sum(entry["size"] for _, entry, _ in found)
    if total > cfg.max_verify_bytes:
        raise Rejected(f"listed files total {total} bytes, over the {cfg.max_verify_bytes}-byte "
                       "limit this function verifies", "files", total)
    checked = []
    for i, entry, blob in found:
        digest, got = hashlib.sha256(), 0
        try:
            while got < entry["size"]:
                end = min(got + HASH_CHUNK_BYTES, entry["size"]) - 1
                chunk = blob.download_as_bytes(start=got, end=end, raw_download=True, checksum=None,
                                               **_gcs_opts(cfg, budget))
                if not chunk:
                    break
                digest.update(chunk)
                got += len(chunk)
        except gexc.NotFound:
            raise Pending(f"listed file {entry['path']!r} was removed while being verified",
                          f"files/{i}/path", entry["path"]) from None
        if got != entry["size"]:
            raise Rejected(f"listed file {entry['path']!r}: read {got} bytes of {entry['size']}",
                           f"files/{i}/size", entry["size"])
        if digest.hexdigest() != entry["sha256"]:
            raise Rejected(f"listed file {entry['path']!r} has sha256 {digest.hexdigest()[:16]}… (content), "
                           f"manifest says {entry['sha256'][:16]}…", f"files/{i}/sha256", entry["sha256"])
        checked.append({**entry, "uri": f"gs://{bucket}/models/{model}/{version}/{entry['path']}",
                        "generation": int(blob.generation)})
    return checked
