#!/usr/bin/env bash
# Idempotent set-up for a fresh machine of this kind: a virtualenv with the project (editable,
# every extra), the Node Firestore emulator, and checkov in a virtualenv of its own (it conflicts
# with kfp's pins, see ../shared/STACK.md). Every Python package comes from a hashed lock in
# requirements/ (pip itself too; README.md "Dependencies" says how to refresh them), every Node
# package from infra/local/package-lock.json. Re-running is cheap: each step is skipped when the
# inputs it was made from have not changed, and a changed lock reinstalls.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PY=${PYTHON:-python3.11}
pyname=$(basename "$PY")

command -v "$PY" >/dev/null || {
  echo "setup: $PY not found; edgeship needs Python 3.11 (Debian/Ubuntu: apt-get install python3.11 python3.11-venv; or set PYTHON=/path/to/python3.11)" >&2
  exit 1
}
for tool in node npm; do
  command -v "$tool" >/dev/null || {
    echo "setup: $tool not found; the local Firestore emulator needs Node.js >= 18 and npm (Debian/Ubuntu: apt-get install nodejs npm)" >&2
    exit 1
  }
done

stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }

# Run a command quietly: its output is shown (on stderr, less this machine's pip index-location
# warnings) only when it fails, and its exit status is kept.
quiet() {
  local log status=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    grep -v '^WARNING: Location' "$log" >&2 || true
  fi
  rm -f "$log"
  return "$status"
}

# A virtualenv with a working pip at $1. A half-made one (python but no pip, as `venv` leaves it
# when ensurepip is missing) is made again.
make_venv() {
  local dir=$1 out
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
    return 0
  fi
  echo "setup: creating $dir"
  rm -rf "$dir"
  if ! out=$("$PY" -m venv "$dir" 2>&1); then
    rm -rf "$dir"
    echo "$out" | tail -n 5 >&2
    echo "setup: '$PY -m venv $dir' failed: $PY lacks the venv module or ensurepip (Debian/Ubuntu: apt-get install $pyname-venv), then run this again" >&2
    exit 1
  fi
}

# Install a lock into a virtualenv: pip from requirements/pip.txt first, then the lock (hashes
# checked, every package pinned, nothing resolved afresh; a package that comes as an sdist is
# built with the lock's setuptools and wheel).
install_lock() {
  local dir=$1 lock=$2
  quiet "$dir/bin/python" -m pip install -q -r requirements/pip.txt \
    || { echo "setup: could not install pip from requirements/pip.txt into $dir" >&2; exit 1; }
  quiet "$dir/bin/python" -m pip install -q -r "$lock" --build-constraint "$lock" \
    || { echo "setup: could not install $lock into $dir (see pip output above)" >&2; exit 1; }
}

make_venv .venv
want=$(stamp pyproject.toml requirements/pip.txt requirements/lock.txt requirements/mediapipe.txt)
if [ "$(cat .venv/.edgeship-stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: installing edgeship and its locked dependencies into .venv (about 2 minutes the first time)"
  install_lock .venv requirements/lock.txt
  # The project itself: editable, no dependencies (the lock has them all), built with the
  # setuptools and wheel the lock just installed.
  quiet .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . \
    || { echo "setup: could not install edgeship itself (see pip output above)" >&2; exit 1; }
  # MediaPipe without its dependencies (why: requirements/mediapipe.txt).
  quiet .venv/bin/python -m pip install -q --no-deps -r requirements/mediapipe.txt \
    || { echo "setup: could not install requirements/mediapipe.txt (see pip output above)" >&2; exit 1; }
  TF_CPP_MIN_LOG_LEVEL=3 quiet .venv/bin/python -c \
    "import edgeship, tensorflow, tf_keras, tensorflow_model_optimization, kfp" \
    || { echo "setup: the install did not complete: the import check above failed" >&2; exit 1; }
  echo "$want" > .venv/.edgeship-stamp
fi

want=$(stamp infra/local/package.json infra/local/package-lock.json)
if [ "$(cat infra/local/node_modules/.edgeship-stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the Firestore emulator (npm ci in infra/local)"
  (cd infra/local && npm ci --silent --no-audit --no-fund)
  echo "$want" > infra/local/node_modules/.edgeship-stamp
fi

if [ "${EDGESHIP_SETUP_CHECKOV:-0}" = 1 ]; then
  make_venv .venv-checkov
  want=$(stamp requirements/pip.txt requirements/lock-checkov.txt)
  if [ "$(cat .venv-checkov/.edgeship-stamp 2>/dev/null)" != "$want" ]; then
    echo "setup: installing checkov (locked) into .venv-checkov"
    install_lock .venv-checkov requirements/lock-checkov.txt
    echo "$want" > .venv-checkov/.edgeship-stamp
  fi
fi
