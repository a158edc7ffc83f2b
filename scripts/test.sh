#!/usr/bin/env bash
# Set up (idempotent) and run the test suite. Extra arguments go to pytest.
# EDGESHIP_TEST_WORKERS (default 2): pytest-xdist worker processes, whole modules per worker
# (module fixtures train once); 0 runs everything in this process. Most of the suite's time is
# TensorFlow tracing models, single-threaded Python: two workers on 2 cores nearly halve it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
EDGESHIP_SETUP_CHECKOV=1 bash scripts/setup.sh
# The layers contract (pyproject.toml [tool.importlinter]): fails on an upward import.
.venv/bin/lint-imports --no-cache
workers=${EDGESHIP_TEST_WORKERS:-2}
if [ "$workers" -gt 0 ] 2>/dev/null; then
  exec .venv/bin/python -m pytest -n "$workers" --dist loadscope "$@"
fi
exec .venv/bin/python -m pytest "$@"
