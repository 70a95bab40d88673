#!/usr/bin/env bash
# Set everything up and run the demo on a local PostgreSQL cluster in .deltapipe/pg:
# two source files, a pipeline of three models (a join, an aggregate, a mart), a changed file
# refreshed incrementally, what changed, a reject, a rollback, and the HTML report
# (.deltapipe/demo/report.html). Re-runnable: each demo starts from a clean slate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
deltapipe server start
deltapipe init
deltapipe demo
