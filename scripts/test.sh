#!/usr/bin/env bash
# Set everything up and run the whole test suite against a real PostgreSQL
# (the tests start their own cluster under /var/tmp). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
