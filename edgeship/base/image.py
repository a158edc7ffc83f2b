"""The one place that names the container images the KFP components run in.

Components are lightweight Python components whose base_image is the CPU image; their bodies
import the edgeship code installed in it. The GPU image (Dockerfile.gpu: the same project with
TensorFlow's CUDA libraries) is the CPU image's repository with ``-gpu`` appended, same tag, as
cloudbuild.yaml pushes them; the steps that get a GPU run on it. The tag follows the package
version. Users push both images to their own registry and point the pipeline at them with
`edgeship pipeline compile --image ... [--gpu-image ...]` (or EDGESHIP_IMAGE / EDGESHIP_GPU_IMAGE);
compile puts the right one on every step.
"""
from edgeship import __version__

IMAGE_REPOSITORY = "us-docker.pkg.dev/edgeship/edgeship/edgeship"
DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
GPU_SUFFIX = "-gpu"
GPU_IMAGE_REPOSITORY = IMAGE_REPOSITORY + GPU_SUFFIX
DEFAULT_GPU_IMAGE = f"{GPU_IMAGE_REPOSITORY}:{__version__}"


def gpu_image_for(image: str) -> str:
    """The GPU image that goes with a CPU image: 'r/p/edgeship:0.1.0-abc' → 'r/p/edgeship-gpu:0.1.0-abc'.

    Raises ValueError for a digest-pinned image (a digest cannot be derived: name the GPU image).
    """
    if "@" in image:
        raise ValueError(f"image {image!r} is pinned by digest: the GPU image cannot be derived from "
                         "it; name it with --gpu-image (or $EDGESHIP_GPU_IMAGE)")
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon] + GPU_SUFFIX + image[colon:]
    return image + GPU_SUFFIX
