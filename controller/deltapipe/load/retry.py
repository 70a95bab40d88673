"""Transient errors (serialization failure, deadlock, lost connection...) retried with backoff."""

from __future__ import annotations

import time

import psycopg
from psycopg.types.json import Jsonb

from deltapipe.db import connect
from deltapipe.errors import DeltapipeError


# Errors worth another try: the work is one transaction, so a retry starts clean.
TRANSIENT = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected, psycopg.errors.AdminShutdown,
             psycopg.errors.CrashShutdown, psycopg.errors.CannotConnectNow, psycopg.errors.TooManyConnections,
             psycopg.errors.LockNotAvailable)
RETRY_ATTEMPTS = 5
RETRY_BUDGET_S = 60.0


def _transient(e: BaseException, conn: psycopg.Connection) -> bool:
    if isinstance(e, TRANSIENT):
        return True
    # a lost connection (server restart, network) shows as OperationalError on a closed connection
    return isinstance(e, psycopg.OperationalError) and conn.closed


def _alive(conn: psycopg.Connection, dsn: str | None) -> psycopg.Connection:
    if not conn.closed and not conn.broken:
        return conn
    try:
        return connect(dsn, autocommit=True)
    except DeltapipeError:
        return conn


def retrying(work, conn: psycopg.Connection, dsn: str | None, run_id: int, nr_id: int) -> psycopg.Connection:
    """Run ``work(conn)``; on a transient error, back off (exponential, with jitter), reconnect if
    needed and try again, within RETRY_ATTEMPTS and RETRY_BUDGET_S. Each retry is recorded on
    the node run (phases.retries, phases.retry_errors). Returns the connection finally used."""
    import random

    start = time.monotonic()
    errors: list[str] = []
    for n in range(RETRY_ATTEMPTS + 1):
        try:
            work(conn)
            if errors:
                conn.execute("UPDATE deltapipe.node_run SET phases = phases || %s WHERE id = %s",
                             (Jsonb({"retries": len(errors), "retry_errors": errors}), nr_id))
            return conn
        except Exception as e:
            if not _transient(e, conn) or n == RETRY_ATTEMPTS or time.monotonic() - start > RETRY_BUDGET_S:
                raise
            errors.append(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            time.sleep(min(8.0, 0.25 * 2 ** n) * (0.5 + random.random()))
            while conn.closed or conn.broken:
                # the server may still be restarting: keep trying within the budget
                try:
                    conn = connect(dsn, autocommit=True)
                    # the run belongs to this connection now (dead-run detection looks at backend_pid)
                    conn.execute("UPDATE deltapipe.run SET backend_pid = pg_backend_pid() WHERE id = %s", (run_id,))
                except (DeltapipeError, psycopg.OperationalError):
                    if time.monotonic() - start > RETRY_BUDGET_S:
                        raise
                    time.sleep(1.0)
    raise AssertionError("unreachable")
