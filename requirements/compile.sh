#!/usr/bin/env bash
# Regenerate every lock file in requirements/ with uv (`uv pip compile`, pinned below), for
# CPython 3.11 on linux x86-64, with sha256 hashes. The inputs are pyproject.toml (the project's
# dependencies and extras), pip.in and checkov.in. Each run keeps every locked version that still
# satisfies the inputs (uv prefers the versions already in the output file):
#   bash requirements/compile.sh                             after editing pyproject.toml or an .in file
#   bash requirements/compile.sh --upgrade                   move the whole tree to the newest allowed versions
#   bash requirements/compile.sh --upgrade-package NAME      move one package
# Then rerun scripts/setup.sh (it reinstalls when a lock changes) and the tests.
#
#   lock.txt          .venv: the project with the dev extra (coreml, cloud, local, test tools)
#   lock-image.txt    Dockerfile: extras coreml, cloud (versions constrained to lock.txt's)
#   lock-gpu.txt      Dockerfile.gpu: extras gpu, coreml, cloud (versions constrained to lock.txt's)
#   lock-checkov.txt  .venv-checkov
#   pip.txt           pip itself
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
PY=${PYTHON:-python3.11}
tool=${TMPDIR:-/tmp}/edgeship-uv-$UV_VERSION
if [ ! -x "$tool/bin/uv" ]; then
  "$PY" -m venv "$tool"
  "$tool/bin/python" -m pip install -q "uv==$UV_VERSION"
fi
compile() {
  "$tool/bin/uv" pip compile --quiet --no-config --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --generate-hashes \
    --custom-compile-command "bash requirements/compile.sh" "$@"
}
compile pyproject.toml --extra dev -o requirements/lock.txt "$@"
compile pyproject.toml --extra coreml --extra cloud -c requirements/lock.txt \
  -o requirements/lock-image.txt "$@"
compile pyproject.toml --extra gpu --extra coreml --extra cloud -c requirements/lock.txt \
  -o requirements/lock-gpu.txt "$@"
compile requirements/checkov.in -o requirements/lock-checkov.txt "$@"
compile requirements/pip.in -o requirements/pip.txt "$@"
echo "requirements/: locks written; rerun scripts/setup.sh and the tests"
