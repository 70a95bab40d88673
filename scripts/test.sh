#!/usr/bin/env bash
# Set everything up and run the whole test suite against a real PostgreSQL
# (the tests start their own cluster under /var/tmp). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# pg_cron for the scheduling tests: Debian's package, when we are root and it is missing
if [ "$(id -u)" = 0 ] && [ ! -e /usr/lib/postgresql/15/lib/pg_cron.so ] && command -v apt-get >/dev/null; then
    (apt-get update && apt-get install -y postgresql-15-cron) >&2 || echo "warning: could not install postgresql-15-cron" >&2
fi
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
