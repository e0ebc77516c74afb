#!/usr/bin/env bash
# Set up (first time) and run every check: lint, format, types, and the whole
# test suite (unit, integration against real SQLite files and real HTTP
# servers on 127.0.0.1, end-to-end with real processes).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# the console's browser tests drive Debian's chromium (Playwright cannot download one here)
if [ ! -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

paths=(src tests); [ -d benchmarks ] && paths+=(benchmarks)
echo "== ruff check";          .venv/bin/ruff check "${paths[@]}"
echo "== ruff format --check"; .venv/bin/ruff format --check "${paths[@]}"
echo "== mypy --strict src";   .venv/bin/mypy --strict src
echo "== mypy --strict harness"; MYPYPATH=benchmarks .venv/bin/mypy --strict -p harness
echo "== pytest";              .venv/bin/python -m pytest "$@"
