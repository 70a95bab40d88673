#!/usr/bin/env bash
# Create .venv (if needed) and install deltapipe with its test dependencies into it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import deltapipe, pytest_postgresql, hypothesis" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.deltapipe-installed ]; then
    .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import deltapipe, pytest_postgresql, hypothesis"
    touch .venv/.deltapipe-installed
fi
