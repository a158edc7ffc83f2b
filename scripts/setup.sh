#!/usr/bin/env bash
# Idempotent set-up for a fresh machine of this kind: a virtualenv with the project (editable,
# every extra), the Node Firestore emulator, and checkov in a virtualenv of its own (it conflicts
# with kfp's pins, see ../shared/STACK.md). Re-running is cheap: each step is skipped when the
# inputs it was made from have not changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || { echo "setup: $PY not found; edgeship needs Python 3.11" >&2; exit 1; }
command -v node >/dev/null || { echo "setup: node not found; the local Firestore emulator needs Node.js >= 18 (apt-get install nodejs npm)" >&2; exit 1; }

stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
want=$(stamp pyproject.toml)
if [ "$(cat .venv/.edgeship-stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: installing edgeship and its dependencies into .venv (about 2 minutes the first time)"
  .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/pip install -q -e ".[dev]" 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c "import edgeship, tensorflow, tf_keras, tensorflow_model_optimization, kfp" \
    || { echo "setup: the install did not complete (see pip output above)" >&2; exit 1; }
  echo "$want" > .venv/.edgeship-stamp
fi

want=$(stamp infra/local/package.json infra/local/package-lock.json)
if [ "$(cat infra/local/node_modules/.edgeship-stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the Firestore emulator (npm ci in infra/local)"
  (cd infra/local && npm ci --silent --no-audit --no-fund)
  echo "$want" > infra/local/node_modules/.edgeship-stamp
fi

if [ "${EDGESHIP_SETUP_CHECKOV:-0}" = 1 ] && [ ! -x .venv-checkov/bin/checkov ]; then
  echo "setup: installing checkov into .venv-checkov"
  "$PY" -m venv .venv-checkov
  .venv-checkov/bin/pip install -q "checkov==3.3.30" 2>&1 | grep -v '^WARNING: Location' || true
fi
