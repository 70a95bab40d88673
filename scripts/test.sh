#!/usr/bin/env bash
# Set everything up and run the whole test suite against a real PostgreSQL
# (the tests start their own cluster under /var/tmp). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# pg_cron for the scheduling tests: Debian's package, when we are root and it is missing
# and Chromium for the run-report rendering test
need=""
[ -e /usr/lib/postgresql/15/lib/pg_cron.so ] || need="$need postgresql-15-cron"
command -v chromium >/dev/null || need="$need chromium"
if [ -n "$need" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $need) >&2 \
        || echo "warning: could not install$need" >&2
fi
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
