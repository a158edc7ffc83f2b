"""The one place that names the container image the KFP components run in.

Components are lightweight Python components whose base_image is this image; their bodies import
the edgeship code installed in it. The tag follows the package version. Users push the image to
their own registry and point the pipeline at it with `edgeship pipeline compile --image ...`
(or EDGESHIP_IMAGE), which rewrites every component's image at compile time.
"""
from edgeship import __version__

IMAGE_REPOSITORY = "us-docker.pkg.dev/edgeship/edgeship/edgeship"
DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
