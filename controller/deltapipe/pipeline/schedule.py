"""`deltapipe schedule NAME 'CRON'` / `unschedule NAME` / `schedules`, through pg_cron.

pg_cron runs in one database of the cluster (cron.database_name; the local
server sets it to `deltapipe`). Jobs for pipelines in other databases are
created there with cron.schedule_in_database. A job runs
CALL deltapipe.run_pipeline('NAME', 'cron') in the pipeline's database.
"""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from deltapipe.db import connect, require_installed, resolve_dsn
from deltapipe.errors import DeltapipeError, from_db

INSTALL_HINT = ("install it (Debian/Ubuntu: apt-get install postgresql-15-cron), then restart the server "
                "(`deltapipe server stop && deltapipe server start` preloads it on the local server; elsewhere add "
                "shared_preload_libraries = 'pg_cron' and cron.database_name to postgresql.conf)")


def job_name(db: str, pipeline: str) -> str:
    return "deltapipe:%s:%s" % (db, pipeline)


def _cron_conn(dsn: str | None):
    """(connection to the pipeline's database, connection to pg_cron's database, pipeline db name)."""
    real = resolve_dsn(dsn)
    conn = connect(real, autocommit=True)
    require_installed(conn)
    preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
    cron_db = conn.execute("SELECT current_setting('cron.database_name', true)").fetchone()[0]
    if "pg_cron" not in preload or not cron_db:
        conn.close()
        raise DeltapipeError("pg_cron is not installed in this PostgreSQL server", hint=INSTALL_HINT, sqlstate="DP215")
    db = conn.execute("SELECT current_database()").fetchone()[0]
    params = conninfo_to_dict(real)
    params["dbname"] = cron_db
    try:
        cc = psycopg.connect(make_conninfo(**params), autocommit=True)
    except psycopg.OperationalError as e:
        conn.close()
        raise DeltapipeError("cannot connect to pg_cron's database %s: %s" % (cron_db, str(e).strip().splitlines()[0]),
                             sqlstate="DP215") from e
    try:
        cc.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
    except psycopg.Error as e:
        conn.close()
        cc.close()
        raise DeltapipeError("pg_cron is not usable: %s" % from_db(e).message, hint=INSTALL_HINT, sqlstate="DP215") from e
    return conn, cc, db


def schedule(dsn: str | None, pipeline: str, cron: str) -> dict:
    conn, cc, db = _cron_conn(dsn)
    try:
        if not conn.execute("SELECT 1 FROM deltapipe.pipeline WHERE name = %s", (pipeline,)).fetchone():
            raise DeltapipeError("unknown pipeline %s" % pipeline, sqlstate="DP201",
                                 hint="deploy it first with `deltapipe deploy DIR`")
        command = "CALL deltapipe.run_pipeline(%s, 'cron')" % psycopg.sql.Literal(pipeline).as_string(conn)
        try:
            jobid = cc.execute("SELECT cron.schedule_in_database(%s, %s, %s, %s)",
                               (job_name(db, pipeline), cron, command, db)).fetchone()[0]
        except psycopg.Error as e:
            err = from_db(e)
            raise DeltapipeError("cannot schedule %s with %r: %s" % (pipeline, cron, err.message), sqlstate="DP216",
                                 hint="use cron syntax, e.g. '*/5 * * * *' (every 5 minutes)") from e
        return {"jobid": jobid, "job": job_name(db, pipeline), "schedule": cron, "command": command, "database": db}
    finally:
        conn.close()
        cc.close()


def unschedule(dsn: str | None, pipeline: str) -> None:
    conn, cc, db = _cron_conn(dsn)
    try:
        row = cc.execute("SELECT jobid FROM cron.job WHERE jobname = %s", (job_name(db, pipeline),)).fetchone()
        if row is None:
            raise DeltapipeError("pipeline %s is not scheduled" % pipeline, sqlstate="DP217",
                                 hint="list schedules with `deltapipe schedules`")
        cc.execute("SELECT cron.unschedule(%s)", (row[0],))
    finally:
        conn.close()
        cc.close()


def schedules(dsn: str | None) -> list[dict]:
    conn, cc, db = _cron_conn(dsn)
    try:
        cur = cc.execute("""
            SELECT j.jobid, j.jobname, j.schedule, j.command, j.database, j.active,
                   (SELECT max(d.start_time) FROM cron.job_run_details d WHERE d.jobid = j.jobid) AS last_start,
                   (SELECT d.status FROM cron.job_run_details d WHERE d.jobid = j.jobid
                     ORDER BY d.start_time DESC NULLS LAST LIMIT 1) AS last_status
              FROM cron.job j WHERE j.jobname LIKE 'deltapipe:%%' AND j.database = %s ORDER BY j.jobname""", (db,))
        names = [c.name for c in cur.description]
        out = [dict(zip(names, r)) for r in cur.fetchall()]
        for r in out:
            r["pipeline"] = r["jobname"].split(":", 2)[2]
        return out
    finally:
        conn.close()
        cc.close()
