#!/usr/bin/env bash
# Set up (idempotent) and run the main job: bring up the local cloud stack and run the whole
# edgeship pipeline on the embedded default data against it. Extra arguments go to `edgeship run`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
exec .venv/bin/edgeship run "$@"
