"""Run history: what ran, when, how long each phase took, what was rejected."""

from __future__ import annotations

from deltapipe.db import connect, require_installed
from deltapipe.errors import DeltapipeError


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

    from deltapipe.errors import from_db
    with connect(dsn) as conn:
        require_installed(conn)
        try:
            return conn.execute("CALL deltapipe.rollback(%s, %s)", (run_id, cascade)).fetchone()[0]
        except psycopg.Error as e:
            raise from_db(e) from e


def changes(dsn: str | None, name: str, run_id: int | None = None, pipeline: str | None = None,
            limit: int = 20) -> dict:
    """The recorded changes of a dataset (deltapipe.changeset) or a model (its change log, through
    deltapipe.changes): {"kind", "pipeline", "total", "rows": newest first, at most ``limit``}."""
    with connect(dsn) as conn:
        require_installed(conn)
        pipes = [r[0] for r in conn.execute(
            "SELECT pipeline FROM deltapipe.model WHERE name = %s AND (%s::text IS NULL OR pipeline = %s) ORDER BY 1",
            (name, pipeline, pipeline)).fetchall()]
        if len(pipes) > 1:
            raise DeltapipeError("model %s is in pipelines %s" % (name, ", ".join(pipes)),
                                 hint="say which with --pipeline")
        if pipes:
            kind, src, args = "model", "deltapipe.changes(%s, %s, %s)", (pipes[0], name, run_id)
        elif pipeline is None and conn.execute("SELECT 1 FROM deltapipe.dataset WHERE name = %s", (name,)).fetchone():
            kind = "dataset"
            src = ("(SELECT run_id, seq, op, key, before, after FROM deltapipe.changeset "
                   "WHERE node = %s AND (%s::bigint IS NULL OR run_id = %s))")
            args = (name, run_id, run_id)
        else:
            raise DeltapipeError("no dataset or model named %s%s" % (name, " in pipeline %s" % pipeline if pipeline else ""),
                                 hint="`deltapipe dataset list` lists datasets, `deltapipe plan DIR` a pipeline's models")
        total = conn.execute("SELECT count(*) FROM %s c" % src, args).fetchone()[0]
        rows = _rows(conn.execute("SELECT c.run_id, c.op, c.key, c.before, c.after FROM %s c "
                                  "ORDER BY c.seq DESC LIMIT %%s" % src,
                                  args + (limit,)))
        return {"kind": kind, "pipeline": pipes[0] if pipes else None, "total": total, "rows": rows}
