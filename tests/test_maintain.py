"""deltapipe maintain: dead runs, orphaned staging, pruning with retention, safe during a load."""

from __future__ import annotations

import psycopg


def test_maintain(cli, conn, dsn, write):
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text")
    cli("load", "t", write("a.csv", "id,name\n1,a\n"))
    cli("load", "t", write("b.csv", "id,name\n1,b\n"))
    # an application that staged a file and went away
    with psycopg.connect(dsn, autocommit=True) as other:
        orphan = other.execute("SELECT deltapipe.stage('t')").fetchone()[0]
    # a session still holding its staging table: left alone
    live = psycopg.connect(dsn)
    mine = live.execute("SELECT deltapipe.stage('t')").fetchone()[0]
    live.commit()
    # a run whose controller died
    conn.execute("INSERT INTO deltapipe.run (kind, status, backend_pid, args) VALUES ('load', 'running', 999999, '{}')")
    # make the two loads old
    conn.execute("UPDATE deltapipe.run SET finished_at = now() - interval '90 days' WHERE status = 'done'")
    r = cli("maintain", "--retention", "60 days")
    assert r.exit_code == 0, r.output
    assert "dead runs marked         1" in r.output
    assert conn.execute("SELECT to_regclass(%s)", (orphan,)).fetchone()[0] is None
    assert conn.execute("SELECT to_regclass(%s)", (mine,)).fetchone()[0] is not None
    # the older load is pruned; the last successful one is kept (skip-unchanged needs it)
    runs = conn.execute("SELECT n.run_id FROM deltapipe.node_run n WHERE n.node = 't' AND n.status = 'done'").fetchall()
    assert len(runs) == 1
    assert conn.execute("SELECT status FROM deltapipe.run WHERE backend_pid = 999999").fetchone()[0] == "failed"
    live.close()
    # SQL form, for pg_cron
    res = conn.execute("CALL deltapipe.maintain()").fetchone()[0]
    assert res["staging_tables_dropped"] == 1
