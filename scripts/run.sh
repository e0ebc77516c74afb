#!/usr/bin/env bash
# Set up (first time) and run Pigeon on the embedded default: API, workers and
# the sandbox SMS provider in one process, data in ./pigeon-data.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/pigeon run "$@"
