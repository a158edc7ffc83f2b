# edgeship CPU image: every KFP component runs in it (edgeship/base/image.py names it).
# Dependencies are declared once, in pyproject.toml; this file only installs the project.
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
COPY pyproject.toml README.md ./
COPY edgeship/ edgeship/
COPY components/ components/
COPY pipelines/ pipelines/
COPY functions/ functions/

# The install step (tests/infra/test_docker.py runs this exact command in a clean virtualenv).
# DL3013 (pin versions in pip) does not apply: "." is this project, whose dependencies are
# pinned in pyproject.toml, the one place they are declared.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[coreml,cloud]" \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin edgeship
USER 10001
WORKDIR /home/edgeship
# KFP runs each component's own command; this default is for `docker run IMAGE`.
CMD ["edgeship", "--help"]
