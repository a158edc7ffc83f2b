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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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


def download_checked(gcs, release: dict, dest: Path, *, attempts: int,
                     progress: Callable[[str, int, int], None] | None = None) -> None:
    """Download the release's model file to ``dest``, retried with backoff, until its size and
    sha256 match the release record; InstallError says why when every attempt failed.
    ``progress(version, bytes_done, bytes_total)`` is called as bytes arrive."""
    from google.api_core import exceptions as gexc

    entry = release["model_file"]
    name = release["prefix"].split(f"gs://{release['bucket']}/", 1)[1] + entry["path"]
    blob = gcs.bucket(release["bucket"]).blob(name)
    delay, problem = 0.2, ""
    for attempt in range(1, attempts + 1):
        try:
            dest.unlink(missing_ok=True)
            with open(dest, "wb") as handle:
                if progress is None:
                    blob.download_to_file(handle)
                else:
                    total = int(entry["size"])
                    blob.download_to_file(_CountingFile(
                        handle, lambda done: progress(release["version"], done, total)))
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


# ------------------------------------------------------------------------ download conditions
@dataclass(frozen=True)
class NetworkState:
    """What the device's network is now. ``cellular``: a mobile data link; ``expensive``: metered
    (cellular or a personal hotspot); ``constrained``: the user asked for low data use."""

    cellular: bool = False
    expensive: bool = False
    constrained: bool = False


@dataclass(frozen=True)
class DownloadConditions:
    """When the client may download, like Firebase ML's ModelDownloadConditions and the Swift
    package's (clients/ios): each ``allow_*`` False forbids downloading on such a network;
    ``min_free_bytes`` keeps that much disk free after the download."""

    allow_cellular: bool = True
    allow_expensive: bool = True
    allow_constrained: bool = True
    min_free_bytes: int = 0

    def blocker(self, network: NetworkState, free_bytes: int, size: int) -> str | None:
        """Why a download of ``size`` bytes must wait now (None: it may start)."""
        if network.cellular and not self.allow_cellular:
            return "on a cellular network (cellular downloads not allowed)"
        if network.expensive and not self.allow_expensive:
            return "on an expensive (metered) network"
        if network.constrained and not self.allow_constrained:
            return "on a constrained (low data) network"
        if free_bytes - size < self.min_free_bytes:
            return (f"{free_bytes - size} bytes would be left free, below the "
                    f"{self.min_free_bytes} required")
        return None


def env_network_state() -> NetworkState:
    """The network as $EDGESHIP_NETWORK describes it (comma-separated: cellular, expensive,
    constrained; unset = none of them). A desktop or server cannot tell a cellular link by itself:
    apps embedding the client pass their own probe instead."""
    flags = {f.strip().lower() for f in os.environ.get("EDGESHIP_NETWORK", "").split(",") if f.strip()}
    unknown = flags - {"cellular", "expensive", "constrained"}
    if unknown:
        raise ValueError(f"EDGESHIP_NETWORK has unknown flag(s) {sorted(unknown)}; use cellular, "
                         "expensive, constrained")
    return NetworkState(cellular="cellular" in flags, expensive="expensive" in flags or "cellular" in flags,
                        constrained="constrained" in flags)


# ------------------------------------------------------------------------------ local models
@dataclass(frozen=True)
class LocalModel:
    version: str
    path: Path
    size: int
    installed_at: float
    current: bool


def list_local(cache_dir: Path) -> list[LocalModel]:
    """The models installed in ``cache_dir``, newest version first, the current one marked."""
    versions = Path(cache_dir) / "versions"
    if not versions.is_dir():
        return []
    current = None
    meta = Path(cache_dir) / CURRENT_META
    if meta.is_file():
        try:
            current = json.loads(meta.read_text()).get("version")
        except (ValueError, OSError):
            current = None
    out = []
    for folder in sorted((p for p in versions.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        model = folder / MODEL_FILE
        if model.is_file():
            out.append(LocalModel(folder.name, model, model.stat().st_size, folder.stat().st_mtime,
                                  folder.name == current))
    return out


def delete_local(cache_dir: Path, version: str) -> Path:
    """Delete an installed version that is not the current one; returns the folder removed.
    ValueError naming the version when it is current or not installed."""
    folder = Path(cache_dir) / "versions" / version
    if Path(version).name != version or not folder.is_dir():
        installed = [m.version for m in list_local(cache_dir)]
        raise ValueError(f"version {version!r} is not installed in {cache_dir} (installed: {installed})")
    if any(m.current and m.version == version for m in list_local(cache_dir)):
        raise ValueError(f"version {version} is the current model in {cache_dir}; it cannot be deleted "
                         "while served (install another first)")
    shutil.rmtree(folder)
    return folder


class _CountingFile:
    """A writable file that reports bytes written (for download progress)."""

    def __init__(self, handle, on_bytes: Callable[[int], None]) -> None:
        self._handle, self._on_bytes, self.done = handle, on_bytes, 0

    def write(self, data: bytes) -> int:
        written = self._handle.write(data)
        self.done += len(data)
        self._on_bytes(self.done)
        return written

    def __getattr__(self, name: str):
        return getattr(self._handle, name)
