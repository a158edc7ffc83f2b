"""What a client checks before it swaps a model in: size and sha256 against the manifest, and a
smoke run in LiteRT (the model loads and runs on a zero input); and what it holds (HeldModel)."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class HeldModel:
    """The verified model the client serves."""
    version: str
    path: Path
    sha256: str
    size: int
    release: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def version_name(self) -> str | None:
        """The publisher's name of this version (``--version-name``), when it has one."""
        return self.release.get("version_name")

    @property
    def task(self) -> str:
        """What the model does (detector when the release does not say)."""
        return self.release.get("task") or "detector"

    def __str__(self) -> str:
        name = f" [{self.version_name}]" if self.version_name else ""
        return f"{self.version}{name} ({self.path}, {self.size} bytes, sha256 {self.sha256[:12]}…)"


class InstallError(Exception):
    """A release could not be installed; the message says why. The old model is kept."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def smoke_check(path: Path, input_spec: dict | None = None) -> None:
    """Load ``path`` in LiteRT, check its first input's shape/dtype against the spec (a -1 in the
    spec's shape matches any size), fill every input with zeros and run it once. Works for any
    model (detector, classifier, segmenter, ...): only the input spec is compared.

    Raises InstallError naming what did not match.
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path), num_threads=1)
        interp.allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - any load failure means a bad model
        raise InstallError(f"LiteRT cannot load {path.name}: {str(exc)[:200]}") from exc
    details = interp.get_input_details()
    if not details:
        raise InstallError(f"{path.name} has no input")
    detail = details[0]
    if input_spec:
        want_shape = [int(d) for d in input_spec.get("shape") or []]
        got_shape = [int(d) for d in detail["shape"]]
        if want_shape and (len(want_shape) != len(got_shape)
                           or any(w not in (-1, g) for w, g in zip(want_shape, got_shape))):
            raise InstallError(f"model input shape {got_shape} != release input shape {want_shape}")
        want_dtype = input_spec.get("dtype")
        if want_dtype and np.dtype(detail["dtype"]).name != want_dtype:
            raise InstallError(f"model input dtype {np.dtype(detail['dtype']).name} != release dtype {want_dtype}")
    try:
        for d in details:
            interp.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
        interp.invoke()
    except Exception as exc:  # noqa: BLE001
        raise InstallError(f"LiteRT cannot run {path.name}: {str(exc)[:200]}") from exc
