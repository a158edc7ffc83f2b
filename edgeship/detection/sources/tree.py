"""A source's files, local or under a gs:// prefix, listed once and read by relative path."""
from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator
from pathlib import Path

from edgeship.base import storage
from edgeship.detection.sources.records import SourceError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _gcs_error(uri: str, exc: Exception) -> FileNotFoundError:
    return FileNotFoundError(f"cannot read the gs:// source {uri}: {type(exc).__name__}: {exc}")


class SourceTree:
    """Every file under ``uri`` (a local directory or file, or a gs:// prefix or object).

    ``files``: paths relative to ``root``, sorted; ``only``: the one file when ``uri`` names a
    file (readers then read just that one). Raises FileNotFoundError naming ``uri`` when it is
    missing, empty or unreadable.
    """

    def __init__(self, uri: str) -> None:
        self.uri = str(uri).rstrip("/") or str(uri)
        self.only: str | None = None
        if storage.is_gcs(self.uri):
            self._list_gcs()
        else:
            self._list_local()
        self._lower = {f.lower(): f for f in self.files}
        self._by_name: dict[str, list[str]] = {}
        for f in self.files:
            self._by_name.setdefault(posixpath.basename(f).lower(), []).append(f)

    def _list_local(self) -> None:
        path = Path(self.uri)
        if path.is_file():
            self.root, self.only = str(path.parent), path.name
        elif path.is_dir():
            self.root = str(path)
        else:
            raise FileNotFoundError(f"dataset source {self.uri} does not exist")
        root = Path(self.root)
        self.files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                            if p.is_file() and not any(part.startswith(".") for part in
                                                       p.relative_to(root).parts))
        if not self.files:
            raise FileNotFoundError(f"dataset source {self.uri} holds no files")

    def _list_gcs(self) -> None:
        try:
            uris = storage.list_files(self.uri)
            if not uris:
                parent = self.uri.rsplit("/", 1)[0]
                if storage.exists(self.uri) and parent.count("/") >= 2:
                    self.only = self.uri.rsplit("/", 1)[1]
                    self.uri, uris = parent, storage.list_files(parent)
        except Exception as exc:  # auth, network, a missing bucket: all say which URI
            raise _gcs_error(self.uri, exc) from exc
        if not uris:
            raise FileNotFoundError(f"nothing under the gs:// source {self.uri} (or it cannot be "
                                    "listed)")
        self.root = self.uri
        prefix = self.uri.rstrip("/") + "/"
        self.files = sorted(u[len(prefix):] for u in uris if u.startswith(prefix))

    def full(self, rel: str) -> str:
        """The URI or path of a file, for messages and reading."""
        return storage_join(self.root, rel)

    def read(self, rel: str) -> bytes:
        try:
            return storage.read_bytes(self.full(rel))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise _gcs_error(self.full(rel), exc) from exc

    def read_many(self, rels: Iterable[str | None]) -> Iterator[bytes | Exception | None]:
        """The bytes of each file in order (the exception in place of one that cannot be read;
        None for None). gs:// objects are fetched 16 at a time."""
        rels = list(rels)

        def one(rel: str | None):
            if rel is None:
                return None
            try:
                return self.read(rel)
            except (OSError, ValueError) as exc:
                return exc

        if not storage.is_gcs(self.root):
            return map(one, rels)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(16) as pool:
            return iter(list(pool.map(one, rels)))

    def candidates(self, suffixes: tuple[str, ...] = ()) -> list[str]:
        """The files (or just ``only``) whose names end with one of ``suffixes`` (any case)."""
        files = [self.only] if self.only else self.files
        return [f for f in files if not suffixes or f.lower().endswith(suffixes)]

    def find(self, rel: str) -> str | None:
        """``rel`` as listed (any case), or None."""
        rel = posixpath.normpath(rel.replace("\\", "/")).lstrip("/")
        return self._lower.get(rel.lower())

    def by_name(self, name: str) -> list[str]:
        """Every file whose base name is ``name`` (any case)."""
        return list(self._by_name.get(posixpath.basename(name.replace("\\", "/")).lower(), []))

    def images(self) -> list[str]:
        return [f for f in self.files if f.lower().endswith(IMAGE_EXTENSIONS)]


def storage_join(root: str, rel: str) -> str:
    return f"{root.rstrip('/')}/{rel}" if rel else root


def resolve_image(tree: SourceTree, file_name: str, bases: list[str], prefer: tuple[str, ...],
                  where: str) -> str:
    """Find an annotation's image file: ``file_name`` under each base folder in turn, then any
    file of that base name (one, or the one whose path holds a ``prefer`` word). Raises
    SourceError naming ``where`` when there is none or the choice is ambiguous."""
    for base in bases:
        found = tree.find(posixpath.join(base, file_name) if base else file_name)
        if found:
            return found
    matches = tree.by_name(file_name)
    tail = file_name.replace("\\", "/").lower()
    if len(matches) > 1 and "/" in tail:
        matches = [m for m in matches if m.lower().endswith(tail)] or matches
    if len(matches) > 1:
        preferred = [m for m in matches if any(w in m.lower().split("/")[:-1] for w in prefer)]
        matches = preferred or matches
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SourceError(f"{where}: image file {file_name!r} is missing (looked in "
                          f"{[b or '.' for b in bases]} and everywhere under {tree.uri})")
    raise SourceError(f"{where}: image file {file_name!r} is ambiguous: {matches[:5]}")
