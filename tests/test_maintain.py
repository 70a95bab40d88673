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


def test_pruning_changes_a_model_has_not_read_makes_its_next_refresh_full(cli, conn, tmp_path):
    """big is refreshed alone twice (--select); the older of those runs is pruned with its changes,
    which enriched never read: enriched refreshes in full next time, and equals a full recompute."""
    from test_incremental import csv, mismatches, node_strategies, setup
    from test_rollback_models import KEYED
    orders = [("insert", i, "c%d" % (i % 4), i, "2024-01-01") for i in range(1, 16)]
    customers = [("insert", "c%d" % k, "r%d" % (k % 2)) for k in range(4)]
    d = setup(tmp_path, cli, orders, customers, KEYED)
    (d / "data/customers.csv").write_text("op,name,region\n")
    for k, ch in enumerate([("update", 5, "c2", 50, "2024-01-02"), ("update", 6, "c3", 60, "2024-01-02")]):
        (d / "data/orders.csv").write_text(csv([ch], "op,id,customer,amount,day"))
        r = cli("run", d, "--no-timeline", "--select", "big", "--incremental-threshold", "1")
        assert r.exit_code == 0, r.output
        if k == 0:
            conn.execute("UPDATE deltapipe.run SET finished_at = now() - interval '90 days'")
    r = cli("maintain", "--retention", "30 days")
    assert r.exit_code == 0 and "runs pruned" in r.output, r.output
    assert conn.execute("SELECT watermark IS NULL FROM deltapipe.model WHERE name = 'enriched'").fetchone()[0]
    assert not conn.execute("SELECT watermark IS NULL FROM deltapipe.model WHERE name = 'by_region'").fetchone()[0]
    r = cli("run", d, "--no-timeline", "--incremental-threshold", "1")
    assert r.exit_code == 0, r.output
    st = node_strategies(conn)
    assert st["enriched"][2] == "no change position recorded yet" and st["by_region"][1] == "incremental", st
    assert mismatches(conn) == []
