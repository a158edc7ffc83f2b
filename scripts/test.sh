#!/usr/bin/env bash
# Set up (idempotent) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
EDGESHIP_SETUP_CHECKOV=1 bash scripts/setup.sh
# The layers contract (pyproject.toml [tool.importlinter]): fails on an upward import.
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest "$@"
