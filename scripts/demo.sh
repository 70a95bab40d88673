#!/usr/bin/env bash
# Set everything up and run the demo on a local PostgreSQL cluster in .deltapipe/pg.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
deltapipe server start
deltapipe init
deltapipe demo
