"""A client's local model cache (``DIR/versions/<version>/model.tflite`` + ``release.json``,
``DIR/current`` → the served version, ``DIR/current.json``): checked downloads, the atomic swap,
pruning, and reading back what an earlier run installed."""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path

from edgeship.delivery.verify import HeldModel, InstallError, _sha256

log = logging.getLogger(__name__)

MODEL_FILE = "model.tflite"
RELEASE_FILE = "release.json"
CURRENT_LINK = "current"
CURRENT_META = "current.json"


class CacheError(Exception):
    """The cache's record of the current model cannot be trusted (missing or corrupt file)."""

    def __init__(self, message: str, version: str | None = None) -> None:
        super().__init__(message)
        self.version = version


def download_checked(gcs, release: dict, dest: Path, *, attempts: int) -> None:
    """Download the release's model file to ``dest``, retried with backoff, until its size and
    sha256 match the release record; InstallError says why when every attempt failed."""
    from google.api_core import exceptions as gexc

    entry = release["model_file"]
    name = release["prefix"].split(f"gs://{release['bucket']}/", 1)[1] + entry["path"]
    blob = gcs.bucket(release["bucket"]).blob(name)
    delay, problem = 0.2, ""
    for attempt in range(1, attempts + 1):
        try:
            dest.unlink(missing_ok=True)
            blob.download_to_filename(str(dest))
        except gexc.NotFound as exc:
            raise InstallError(f"model file gs://{release['bucket']}/{name} does not exist") from exc
        except Exception as exc:  # noqa: BLE001 - network: retry
            problem = f"download attempt {attempt} failed: {type(exc).__name__}: {str(exc)[:200]}"
            log.warning("%s", problem)
            time.sleep(delay)
            delay *= 2
            continue
        size = dest.stat().st_size
        if size != entry["size"]:
            problem = f"downloaded {size} bytes, release says {entry['size']}"
        else:
            sha = _sha256(dest)
            if sha == entry["sha256"]:
                return
            problem = f"sha256 {sha[:16]}… != release's {entry['sha256'][:16]}…"
        log.warning("download attempt %d of %s: %s", attempt, release["version"], problem)
    raise InstallError(problem or "download failed")


def point_current(cache_dir: Path, held: HeldModel) -> None:
    """Point ``current`` at ``held``'s version folder and record it in current.json, each by an
    atomic rename, so a reader sees the old model or the new one, never a mix."""
    tmp_link = cache_dir / f".current-{secrets.token_hex(4)}"
    os.symlink(Path("versions") / held.version, tmp_link)
    os.replace(tmp_link, cache_dir / CURRENT_LINK)
    meta = {"version": held.version, "sha256": held.sha256, "size": held.size,
            "path": str(held.path), "installed_at": time.time()}
    tmp_meta = cache_dir / f".current-{secrets.token_hex(4)}.json"
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, cache_dir / CURRENT_META)


def prune(cache_dir: Path, current_version: str | None, keep: int) -> None:
    """Delete version folders beyond the ``keep`` newest, never the current one."""
    versions = cache_dir / "versions"
    if not versions.is_dir():
        return
    dirs = sorted((p for p in versions.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    keep_names = {current_version} | {p.name for p in dirs[-keep:]}
    for path in dirs:
        if path.name not in keep_names:
            shutil.rmtree(path, ignore_errors=True)


def read_current(cache_dir: Path) -> HeldModel | None:
    """The model an earlier run installed, if its file still verifies; None when there is none.
    Raises CacheError (with the version when known) for a missing or corrupt file or record."""
    meta_path = cache_dir / CURRENT_META
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        path = cache_dir / "versions" / meta["version"] / MODEL_FILE
        if not (path.is_file() and _sha256(path) == meta["sha256"]):
            raise CacheError(f"cached model {path} is missing or corrupt; ignoring it", meta.get("version"))
        release = {}
        rel = path.parent / RELEASE_FILE
        if rel.is_file():
            release = json.loads(rel.read_text())
        return HeldModel(meta["version"], path, meta["sha256"], int(meta["size"]), release)
    except (ValueError, KeyError, OSError) as exc:
        raise CacheError(f"cannot read {meta_path}: {exc}") from exc
