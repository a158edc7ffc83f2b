"""Compile the edgeship pipeline to KFP IR YAML, with the images and machines chosen at compile time.

Every component is a lightweight Python component on edgeship.base.image's images. A user who
pushed the images to their own registry passes ``image`` (CLI ``--image``, or $EDGESHIP_IMAGE)
and, when a step gets a GPU, ``gpu_image`` (``--gpu-image``, $EDGESHIP_GPU_IMAGE, else the CPU
image's repository + "-gpu", as cloudbuild.yaml pushes it). ``plan`` (pipelines.resources: the
``--profile``, ``--accelerator-*``, ``--resource`` and ``--multi-worker`` options) sets every
step's CPU, memory and GPU; the compiled spec names each executor's image and limits
(pipelines.placement.step_summary reads them back).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IMAGE_ENV = "EDGESHIP_IMAGE"
GPU_IMAGE_ENV = "EDGESHIP_GPU_IMAGE"


def _check_reference(chosen: str, option: str) -> str:
    if any(c.isspace() for c in chosen) or chosen.startswith(("-", ":", "/")):
        raise ValueError(f"{option}: image name {chosen!r} is not a valid container image reference")
    return chosen


def resolve_gpu_image(gpu_image: str | None, cpu_image: str) -> str:
    """The GPU image: the argument, else $EDGESHIP_GPU_IMAGE, else derived from ``cpu_image``."""
    from edgeship.base.image import gpu_image_for

    chosen = (gpu_image or "").strip() or os.environ.get(GPU_IMAGE_ENV, "").strip()
    if chosen:
        return _check_reference(chosen, "--gpu-image")
    return gpu_image_for(cpu_image)


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


def compile_pipeline(out: str | Path, image: str | None = None, *, gpu_image: str | None = None,
                     plan=None) -> Path:
    """Compile the edgeship pipeline for ``plan`` (default: the cpu profile) to ``out`` (IR YAML):
    steps with a GPU on the GPU image, the others on ``image``.

    Side effects: writes ``out`` (parent folders created). Raises ValueError for a bad image name.
    """
    from kfp import compiler

    from pipelines import resources
    from pipelines.edgeship_pipeline import build_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plan = plan or resources.resolve()
    cpu = resolve_image(image)
    needs_gpu = any(plan.accelerated(step) for step in resources.STEPS)
    gpu = resolve_gpu_image(gpu_image, cpu) if needs_gpu else cpu
    pipeline = build_pipeline(plan, cpu_image=cpu, gpu_image=gpu)
    compiler.Compiler().compile(pipeline, str(out))
    log.info("compiled %s (profile %s, target %s): CPU image %s%s", out, plan.profile, plan.target,
             cpu, f", GPU image {gpu}" if needs_gpu else "")
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
