"""Compile the edgeship pipeline to KFP IR YAML, with the container image chosen at compile time.

Every component is a lightweight Python component whose base_image is edgeship.base.image's
DEFAULT_IMAGE. A user who pushed the image to their own registry passes ``image`` (CLI
``--image``, or $EDGESHIP_IMAGE); the compiled spec then names that image in every executor.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IMAGE_ENV = "EDGESHIP_IMAGE"


def resolve_image(image: str | None, *, required: bool = False) -> str:
    """The image to use: the argument, else $EDGESHIP_IMAGE, else the default (unless required).

    Raises ValueError when ``required`` and neither the argument nor the variable names one.
    """
    from edgeship.base.image import DEFAULT_IMAGE

    chosen = (image or "").strip() or os.environ.get(IMAGE_ENV, "").strip()
    if chosen:
        if any(c.isspace() for c in chosen) or chosen.startswith(("-", ":", "/")):
            raise ValueError(f"image name {chosen!r} is not a valid container image reference")
        return chosen
    if required:
        raise ValueError("no container image given: pass --image REGISTRY/PATH:TAG (or set "
                         f"${IMAGE_ENV}) naming the edgeship image you pushed (see docs/deploy.md); "
                         f"the built-in default {DEFAULT_IMAGE} is only a placeholder")
    return DEFAULT_IMAGE


def rewrite_images(spec: dict[str, Any], image: str) -> int:
    """Set every executor's container image in a compiled pipeline spec. Returns how many."""
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    count = 0
    for executor in executors.values():
        container = executor.get("container")
        if container is not None:
            container["image"] = image
            count += 1
    return count


def compile_pipeline(out: str | Path, image: str | None = None) -> Path:
    """Compile pipelines.edgeship_pipeline to ``out`` (IR YAML) with every component on ``image``.

    Side effects: writes ``out`` (parent folders created).
    """
    import yaml
    from kfp import compiler

    from pipelines.edgeship_pipeline import edgeship_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image = resolve_image(image)
    compiler.Compiler().compile(edgeship_pipeline, str(out))
    docs = list(yaml.safe_load_all(out.read_text()))
    count = rewrite_images(docs[0], image)
    out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    log.info("compiled %s: %d executors on %s", out, count, image)
    return out


def load_spec(path: str | Path) -> dict[str, Any]:
    """The pipeline spec (first YAML document) of a compiled template."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no compiled pipeline at {path}")
    docs = list(yaml.safe_load_all(path.read_text()))
    if not docs or not isinstance(docs[0], dict) or "root" not in docs[0]:
        raise ValueError(f"{path} is not a compiled KFP pipeline spec (no 'root')")
    return docs[0]
