"""Run history: what ran, when, how long each phase took, what was rejected."""

from __future__ import annotations

from .db import connect, require_installed
from .errors import DeltapipeError


def _rows(cur) -> list[dict]:
    names = [c.name for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def list_runs(dsn: str | None, limit: int = 20) -> list[dict]:
    with connect(dsn) as conn:
        require_installed(conn)
        return _rows(conn.execute("""
            SELECT r.id, r.kind, r.trigger, r.status, r.started_at, r.finished_at,
                   coalesce(r.pipeline, r.args->>'dataset') AS target,
                   extract(epoch FROM coalesce(r.finished_at, clock_timestamp()) - r.started_at) AS seconds,
                   coalesce(sum(n.rows_in), 0) AS rows_in, coalesce(sum(n.inserted), 0) AS inserted,
                   coalesce(sum(n.updated), 0) AS updated, coalesce(sum(n.deleted), 0) AS deleted,
                   coalesce(sum(n.rejected), 0) AS rejected, r.error
            FROM deltapipe.run r LEFT JOIN deltapipe.node_run n ON n.run_id = r.id
            GROUP BY r.id ORDER BY r.id DESC LIMIT %s""", (limit,)))


def show_run(dsn: str | None, run_id: int, reject_limit: int = 20) -> dict:
    with connect(dsn) as conn:
        require_installed(conn)
        runs = _rows(conn.execute("SELECT * FROM deltapipe.run WHERE id = %s", (run_id,)))
        if not runs:
            raise DeltapipeError("unknown run %s" % run_id, hint="list runs with `deltapipe runs`")
        run = runs[0]
        run["nodes"] = _rows(conn.execute("SELECT * FROM deltapipe.node_run WHERE run_id = %s ORDER BY id", (run_id,)))
        run["rejects"] = _rows(conn.execute(
            "SELECT dataset, line_no, column_name, sqlstate, message, raw_line FROM deltapipe.reject "
            "WHERE run_id = %s ORDER BY line_no LIMIT %s", (run_id, reject_limit)))
        run["reject_count"] = conn.execute("SELECT count(*) FROM deltapipe.reject WHERE run_id = %s",
                                           (run_id,)).fetchone()[0]
        run["audits"] = _rows(conn.execute(
            "SELECT node, audit, blocking, failing_rows, sample FROM deltapipe.audit_result WHERE run_id = %s "
            "ORDER BY node, failing_rows = 0, audit", (run_id,)))
        return run


def rollback(dsn: str | None, run_id: int, cascade: bool = False) -> dict:
    """Restore every table the run changed to its state before the run."""
    import psycopg

    from .errors import from_db
    with connect(dsn) as conn:
        require_installed(conn)
        try:
            return conn.execute("CALL deltapipe.rollback(%s, %s)", (run_id, cascade)).fetchone()[0]
        except psycopg.Error as e:
            raise from_db(e) from e
