"""Read and write local paths and gs:// URIs through one small API.

gs:// access goes through google-cloud-storage. When STORAGE_EMULATOR_HOST is set (the local
stack, tests), the client talks to that server with anonymous credentials. The client is made on
first use, never at import.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GcsPath:
    bucket: str
    name: str  # object name or prefix, without a leading slash

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


def is_gcs(uri: str | os.PathLike) -> bool:
    return str(uri).startswith("gs://")


def parse_gcs(uri: str) -> GcsPath:
    """Split gs://bucket/name; raise ValueError naming the URI if it is malformed."""
    if not is_gcs(uri):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    rest = uri[len("gs://"):]
    bucket, _, name = rest.partition("/")
    if not bucket:
        raise ValueError(f"gs:// URI has no bucket: {uri!r}")
    return GcsPath(bucket, name)


@functools.lru_cache(maxsize=4)
def _client(emulator_host: str | None, project: str | None):
    from google.cloud import storage

    if emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=project or "edgeship-local", credentials=AnonymousCredentials())
    return storage.Client(project=project)


def gcs_client():
    """A google.cloud.storage.Client for the real service or the emulator in STORAGE_EMULATOR_HOST."""
    return _client(os.environ.get("STORAGE_EMULATOR_HOST"), os.environ.get("GOOGLE_CLOUD_PROJECT"))


def read_bytes(uri: str | os.PathLike) -> bytes:
    """Read a whole file or object. Raises FileNotFoundError naming the URI if it is absent."""
    uri = str(uri)
    if not is_gcs(uri):
        path = Path(uri)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {uri}")
        return path.read_bytes()
    from google.api_core import exceptions

    loc = parse_gcs(uri)
    try:
        return gcs_client().bucket(loc.bucket).blob(loc.name).download_as_bytes()
    except exceptions.NotFound as exc:
        raise FileNotFoundError(f"no such object: {uri}") from exc
    except exceptions.GoogleAPICallError as exc:
        raise FileNotFoundError(f"cannot read {uri}: {exc}") from exc


def exists(uri: str | os.PathLike) -> bool:
    uri = str(uri)
    if not is_gcs(uri):
        return Path(uri).exists()
    loc = parse_gcs(uri)
    bucket = gcs_client().bucket(loc.bucket)
    if bucket.blob(loc.name).exists():
        return True
    prefix = loc.name.rstrip("/") + "/"
    return any(True for _ in gcs_client().list_blobs(loc.bucket, prefix=prefix, max_results=1))


def list_files(uri: str | os.PathLike) -> list[str]:
    """All files under a directory or gs:// prefix, as URIs/paths, sorted."""
    uri = str(uri)
    if not is_gcs(uri):
        root = Path(uri)
        return sorted(str(p) for p in root.rglob("*") if p.is_file())
    loc = parse_gcs(uri)
    prefix = loc.name.rstrip("/") + "/" if loc.name else ""
    return sorted(f"gs://{loc.bucket}/{b.name}" for b in gcs_client().list_blobs(loc.bucket, prefix=prefix))


def upload_dir(local_dir: str | os.PathLike, uri: str, *, overwrite: bool = False) -> list[str]:
    """Upload every file under local_dir to the gs:// prefix uri. Returns the object URIs.

    With overwrite=False each upload is create-only (if_generation_match=0): an existing object
    raises google.api_core.exceptions.PreconditionFailed instead of being replaced.
    """
    local_dir = Path(local_dir)
    loc = parse_gcs(uri)
    bucket = gcs_client().bucket(loc.bucket)
    prefix = loc.name.rstrip("/")
    out = []
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(local_dir).as_posix()
        name = f"{prefix}/{rel}" if prefix else rel
        kwargs = {} if overwrite else {"if_generation_match": 0}
        bucket.blob(name).upload_from_filename(str(path), **kwargs)
        out.append(f"gs://{loc.bucket}/{name}")
    return out


def download_dir(uri: str, local_dir: str | os.PathLike) -> Path:
    """Copy every object under the gs:// prefix uri into local_dir (created). Returns local_dir.

    Raises FileNotFoundError naming the URI when nothing is there.
    """
    loc = parse_gcs(uri)
    local_dir = Path(local_dir)
    prefix = loc.name.rstrip("/") + "/" if loc.name else ""
    blobs = list(gcs_client().list_blobs(loc.bucket, prefix=prefix))
    if not blobs:
        raise FileNotFoundError(f"nothing under {uri}")
    for blob in blobs:
        dest = local_dir / blob.name[len(prefix):]
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(dest))
    return local_dir
