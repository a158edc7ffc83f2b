# edgeship CPU image: every KFP component runs in it (edgeship/base/image.py names it).
# Dependencies come from requirements/lock-image.txt (the whole tree for extras coreml + cloud,
# pinned with hashes; README.md "Dependencies"), installed in a layer of their own before the code
# is copied, so a code change rebuilds only the last layers and does not reinstall TensorFlow.
# Build: docker build -t REGION-docker.pkg.dev/PROJECT/edgeship/edgeship:0.1.0 .
# Pin the digest too in production: FROM python:3.11.13-slim-bookworm@sha256:<digest>
# (docker buildx imagetools inspect python:3.11.13-slim-bookworm).
# checkov:skip=CKV_DOCKER_2: batch image; each KFP step runs to completion, there is no server to probe.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /opt/edgeship

# 1. Dependencies only: pip, then the lock (hash-checked; tests/infra/test_docker.py runs these
#    exact commands as a dry run in a clean virtualenv).
COPY requirements/pip.txt requirements/lock-image.txt requirements/mediapipe-image.txt requirements/
RUN pip install --no-cache-dir -r requirements/pip.txt \
    && pip install --no-cache-dir -r requirements/lock-image.txt \
        --build-constraint requirements/lock-image.txt \
    && pip check \
    && pip install --no-cache-dir --no-deps -r requirements/mediapipe-image.txt

# 2. The code, and the project itself without dependencies (the lock installed them all), built
#    with the setuptools and wheel the lock installed. DL3013 (pin versions in pip) does not
#    apply: "." is this project.
COPY pyproject.toml README.md ./
COPY edgeship/ edgeship/
COPY components/ components/
COPY pipelines/ pipelines/
COPY functions/ functions/
# pip check: everything but mediapipe's own (deliberately unmet, requirements/mediapipe.txt) pins.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && (pip check > /tmp/pip-check.txt || true) \
    && ! grep -v -e '^mediapipe ' -e '^No broken requirements' /tmp/pip-check.txt \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin edgeship
USER 10001
WORKDIR /home/edgeship
# KFP runs each component's own command; this default is for `docker run IMAGE`.
CMD ["edgeship", "--help"]
