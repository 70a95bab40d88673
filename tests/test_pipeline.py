"""Pipelines: dependency inference, errors, deploy/plan, runs with the database queue, skip, failures,
the SQL runner, concurrency and resume. Real PostgreSQL throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from deltapipe import pipeline as pl
from pipeline_helpers import make_pipeline, model_changes

ORDERS_BY_CUSTOMER = "-- key: customer\nSELECT customer, sum(amount) AS total, count(*) AS n FROM orders GROUP BY customer\n"


def nodes(conn, run_id):
    return {r[0]: r[1:] for r in conn.execute(
        "SELECT node, status, skip_reason, inserted, updated, deleted, error FROM deltapipe.node_run "
        "WHERE run_id = %s", (run_id,)).fetchall()}


def last_run(conn):
    return conn.execute("SELECT id, status, trigger FROM deltapipe.run WHERE kind = 'pipeline' "
                        "ORDER BY id DESC LIMIT 1").fetchone()


# ------------------------------------------------------------------ dependencies
def test_dependencies_over_tricky_sql(conn, tmp_path):
    conn.execute('CREATE SCHEMA raw; CREATE TABLE raw."Order Items" (order_id int, sku text); '
                 'CREATE TABLE public.fx (cur text, rate numeric)')
    d = make_pipeline(tmp_path / "p", {
        # a CTE named like a real table: the CTE body reads the table, the outer query reads the CTE
        "shadow": "WITH orders AS (SELECT * FROM orders WHERE amount > 0)\nSELECT customer FROM orders",
        # a CTE that shadows a model name completely: no dependency on that model
        "pure_cte": "WITH shadow AS (SELECT 1 AS x) SELECT x FROM shadow",
        "nested": ('SELECT s.order_id FROM (SELECT order_id FROM raw."Order Items") s\n'
                   'WHERE s.order_id IN (SELECT id FROM public.orders)\n'
                   '  AND EXISTS (SELECT 1 FROM "shadow" sh WHERE sh.customer IS NOT NULL)\n'
                   '  AND EXISTS (SELECT 1 FROM FX WHERE fx.rate > 0)'),
        "funcs": "-- depends_on: pure_cte\nSELECT g AS n FROM generate_series(1, 3) g",
    })
    p = pl.load(d, conn)
    ups = {m.name: m.upstreams for m in p.models.values()}
    assert ups["shadow"] == {"orders": "source"}
    assert ups["pure_cte"] == {}
    assert ups["nested"] == {'raw."Order Items"': "external", "orders": "source", "shadow": "model",
                             "public.fx": "external"}
    assert ups["funcs"] == {"pure_cte": "model"}
    assert pl.topo_order(p).index("shadow") < pl.topo_order(p).index("nested")


def test_fingerprint_ignores_formatting_and_comments(tmp_path):
    a = make_pipeline(tmp_path / "a", {"m": "SELECT customer, amount FROM orders WHERE amount > 1"})
    b = make_pipeline(tmp_path / "b", {"m": "-- a comment\nselect   customer,\n  amount\nFROM orders /* why */ where amount>1;\n"})
    c = make_pipeline(tmp_path / "c", {"m": "SELECT customer, amount FROM orders WHERE amount > 2"})
    fa, fb, fc = (pl.read_pipeline(x).models["m"].fingerprint for x in (a, b, c))
    assert fa == fb != fc


@pytest.mark.parametrize("models, expected", [
    ({"a": "SELECT * FROM b", "b": "SELECT * FROM c", "c": "SELECT * FROM a", "d": "SELECT * FROM orders"},
     "error: cycle: a -> b -> c -> a"),
    ({"a": "SELECT 1 AS x\n\nUNION ALL\nSELECT y FROM nosuch"},
     "error: models/a.sql:4: unknown table nosuch (not a source, a model, or an existing table)"),
    ({"a": "-- key: id\nSELECT id,\n  FROM WHERE x"}, "error: models/a.sql:3: parse error:"),
    ({"x/t": "SELECT 1 AS i", "y/t": "SELECT 2 AS i"}, "error: models/x/t.sql and models/y/t.sql both write table public.t"),
    ({"orders": "SELECT 1 AS i"}, "error: models/orders.sql writes table public.orders, which is source dataset orders"),
    ({"a": "-- depends_on: ghost\nSELECT 1 AS i"}, "error: models/a.sql:1: depends_on names unknown model or source ghost"),
])
def test_pipeline_errors_are_one_line(cli, tmp_path, models, expected):
    d = make_pipeline(tmp_path / "p", models)
    for cmd in ("deploy", "plan"):
        r = cli(cmd, d)
        assert r.exit_code == 1, r.output
        assert r.output.startswith(expected), r.output
        assert r.output.count("\n") == 1 and "Traceback" not in r.output


# ------------------------------------------------------------------ deploy, plan, dag
def test_deploy_plan_and_dag(cli, conn, tmp_path):
    d = make_pipeline(tmp_path / "p", {"by_customer": ORDERS_BY_CUSTOMER,
                                       "top": "SELECT customer FROM by_customer WHERE total > 6"})
    r = cli("deploy", d)
    assert r.exit_code == 0, r.output
    assert "deployed pipeline p: 1 sources, 2 models (2 edges)" in r.output
    assert conn.execute("SELECT node, upstream, upstream_kind FROM deltapipe.model_edge ORDER BY 1").fetchall() == [
        ("by_customer", "orders", "source"), ("top", "by_customer", "model")]
    r = cli("plan", d)
    assert "load source  orders" in r.output and "run  model   by_customer              new" in r.output
    assert cli("run", d).exit_code == 0
    r = cli("plan", d)
    assert "skip model   top                      unchanged since run" in r.output, r.output
    assert "0 to run, 3 to skip" in r.output
    # reformatting is not a change; a real edit is
    (d / "models" / "top.sql").write_text("-- reformatted\nselect customer\n  from by_customer where total>6;")
    assert "0 to run" in cli("plan", d).output
    (d / "models" / "top.sql").write_text("SELECT customer FROM by_customer WHERE total > 7")
    r = cli("plan", d)
    assert "run  model   top                      SQL changed" in r.output
    (d / "data" / "orders.csv").write_text("id,customer,amount,day\n1,ann,10,2024-01-01\n")
    r = cli("plan", d)
    assert "load source  orders                   file changed" in r.output
    assert "run  model   by_customer              input changed: orders" in r.output
    # plan ran nothing
    assert conn.execute("SELECT count(*) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0] == 1
    out = cli("dag", d, "--format", "mermaid").output
    assert out.startswith("graph LR") and out.count("-->") == 2
    out = cli("dag", d, "--format", "dot").output
    assert '"orders" -> "by_customer";' in out and '"by_customer" -> "top";' in out
    assert "model   top                      <- by_customer" in cli("dag", d).output


# ------------------------------------------------------------------ running
def test_run_refresh_skip_and_changeset(cli, conn, tmp_path):
    d = make_pipeline(tmp_path / "p", {"by_customer": ORDERS_BY_CUSTOMER,
                                       "big": "SELECT customer FROM by_customer WHERE total > 6",
                                       "days": "-- key: day\nSELECT day, count(*) AS n FROM orders GROUP BY day"})
    r = cli("run", d)
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT customer, total, n FROM by_customer ORDER BY 1").fetchall() == [("ann", 17, 2), ("bob", 5, 1)]
    assert conn.execute("SELECT customer FROM big").fetchall() == [("ann",)]
    run1 = last_run(conn)[0]
    # nothing changed: every node skipped, with the reason
    r = cli("run", d)
    assert r.exit_code == 0
    run2, status, trigger = last_run(conn)
    assert (status, trigger) == ("done", "cli")
    n = nodes(conn, run2)
    assert {k: v[0] for k, v in n.items()} == {"orders": "skipped", "by_customer": "skipped", "big": "skipped",
                                               "days": "skipped"}
    assert n["by_customer"][1] == "unchanged: same SQL and same inputs as in run %d" % run1
    assert n["orders"][1].startswith("file unchanged")
    # bob's order changes: by_customer merges one update, days is unchanged but re-checked
    (d / "data" / "orders.csv").write_text("id,customer,amount,day\n1,ann,10,2024-01-01\n2,bob,9,2024-01-01\n"
                                          "3,ann,7,2024-01-02\n")
    r = cli("run", d)
    assert r.exit_code == 0, r.output
    run3 = last_run(conn)[0]
    n = nodes(conn, run3)
    assert n["by_customer"][0] == "done" and n["by_customer"][2:5] == (0, 1, 0)
    assert n["days"][0] == "done" and n["days"][2:5] == (0, 0, 0)  # input changed, result did not
    assert n["big"][0] == "done" and n["big"][2:5] == (1, 0, 0)
    assert model_changes(conn, "by_customer", run3, cols="c.op, c.key, c.before->>'total'") == \
        [("U", {"customer": "bob"}, "5")]
    assert model_changes(conn, "big", run3, cols="c.op, c.key") == [("I", {"customer": "bob"})]
    assert conn.execute("SELECT customer FROM big ORDER BY 1").fetchall() == [("ann",), ("bob",)]
    # timings and timeline are printed
    r = cli("runs", "timeline", run3)
    assert r.exit_code == 0 and "by_customer" in r.output and "#" in r.output


def test_select_runs_a_subgraph(cli, conn, tmp_path):
    d = make_pipeline(tmp_path / "p", {"a": ORDERS_BY_CUSTOMER, "b": "SELECT * FROM a", "c": "SELECT 1 AS one"})
    r = cli("run", d, "--select", "a+")
    assert r.exit_code == 0, r.output
    assert set(nodes(conn, last_run(conn)[0])) == {"orders", "a", "b"}
    assert cli("run", d, "--select", "+b", "--full-refresh").exit_code == 0
    assert {k: v[0] for k, v in nodes(conn, last_run(conn)[0]).items()} == {"orders": "skipped", "a": "done", "b": "done"}
    r = cli("run", d, "--select", "zz")
    assert r.exit_code == 1 and r.output.startswith("error: --select zz: unknown model zz")


def test_parallel_workers_overlap(cli, conn, tmp_path):
    models = {"l1": "SELECT customer, pg_sleep(0.4) IS NULL AS s FROM orders LIMIT 1",
              "r1": "SELECT customer, pg_sleep(0.4) IS NULL AS s FROM orders LIMIT 1",
              "l2": "SELECT * FROM l1", "r2": "SELECT * FROM r1"}
    d = make_pipeline(tmp_path / "p", models)

    def spans(run_id):
        return {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT node, started_at, finished_at FROM deltapipe.node_run WHERE run_id = %s AND node_kind = 'model'",
            (run_id,)).fetchall()}

    assert cli("run", d, "--workers", "2").exit_code == 0
    s = spans(last_run(conn)[0])
    assert s["l1"][0] < s["r1"][1] and s["r1"][0] < s["l1"][1], s  # the two branches overlapped
    assert s["l2"][0] >= s["l1"][1] and s["r2"][0] >= s["r1"][1]  # each node after its upstream
    assert cli("run", d, "--workers", "1", "--full-refresh").exit_code == 0
    s = spans(last_run(conn)[0])
    assert not (s["l1"][0] < s["r1"][1] and s["r1"][0] < s["l1"][1]), s


def test_failed_node_keeps_table_and_stops_downstream(cli, conn, tmp_path):
    d = make_pipeline(tmp_path / "p", {"a": ORDERS_BY_CUSTOMER, "b": "SELECT * FROM a",
                                       "z": "SELECT 1 AS one"})
    assert cli("run", d).exit_code == 0
    before = conn.execute("SELECT * FROM a ORDER BY 1").fetchall()
    (d / "models" / "a.sql").write_text("-- key: customer\nSELECT customer, 1 / (amount - amount) AS boom FROM orders")
    (d / "models" / "z.sql").write_text("SELECT 2 AS one")
    r = cli("run", d, "--keep-going")
    assert r.exit_code == 1
    assert "error: run %d failed: a: division by zero" % last_run(conn)[0] in r.output
    n = nodes(conn, last_run(conn)[0])
    assert n["a"][0] == "failed" and n["a"][5].startswith("division by zero")
    assert n["b"][:2] == ("skipped", "upstream a failed")
    assert n["z"][0] == "done"  # independent branch finished with --keep-going
    assert conn.execute("SELECT * FROM a ORDER BY 1").fetchall() == before
    assert conn.execute("SELECT one FROM z").fetchall() == [(2,)]
    # a duplicate key is a clear error and the table stays as it was
    (d / "models" / "a.sql").write_text("-- key: customer\nSELECT 'x' AS customer FROM orders")
    r = cli("run", d)
    assert r.exit_code == 1 and "model a: key (customer) is not unique or has nulls" in r.output
    assert conn.execute("SELECT * FROM a ORDER BY 1").fetchall() == before


def test_schema_change_swaps_and_keyless_models(cli, conn, tmp_path):
    d = make_pipeline(tmp_path / "p", {"k": "SELECT customer, amount FROM orders"})
    assert cli("run", d).exit_code == 0
    (d / "data" / "orders.csv").write_text("id,customer,amount,day\n1,ann,10,2024-01-01\n2,bob,6,2024-01-01\n")
    assert cli("run", d).exit_code == 0
    run_id = last_run(conn)[0]
    assert nodes(conn, run_id)["k"][2:5] == (1, 0, 2)  # keyless: compared by row value
    (d / "models" / "k.sql").write_text("SELECT customer, amount, day FROM orders")
    assert cli("run", d).exit_code == 0
    assert conn.execute("SELECT count(*), count(day) FROM k").fetchone() == (2, 2)


# ------------------------------------------------------------------ SQL runner
def test_sql_runner_same_queue_and_logic(cli, conn, tmp_path):
    d = make_pipeline(tmp_path / "p", {"a": ORDERS_BY_CUSTOMER, "b": "SELECT * FROM a", "c": "SELECT 1 / 0 AS x",
                                       "e": "SELECT * FROM c"})
    assert cli("deploy", d).exit_code == 0
    r = cli("load", "orders", d / "data" / "orders.csv")
    assert r.exit_code == 0, r.output
    run_id = conn.execute("CALL deltapipe.run_pipeline('p', 'sql', '{\"keep_going\": true}')").fetchone()[0]
    assert last_run(conn) == (run_id, "failed", "sql")
    n = nodes(conn, run_id)
    assert {k: v[0] for k, v in n.items()} == {"a": "done", "b": "done", "c": "failed", "e": "skipped"}
    assert n["c"][5] == "division by zero" and n["e"][1] == "upstream c failed"
    assert conn.execute("SELECT sum(total) FROM b").fetchone()[0] == 22
    (d / "models" / "c.sql").write_text("SELECT 1 AS x")
    assert cli("deploy", d).exit_code == 0
    run_id = conn.execute("CALL deltapipe.run_pipeline('p')").fetchone()[0]
    n = nodes(conn, run_id)
    assert {k: v[0] for k, v in n.items()} == {"a": "skipped", "b": "skipped", "c": "done", "e": "done"}
    with pytest.raises(Exception, match="unknown pipeline nope"):
        conn.execute("CALL deltapipe.run_pipeline('nope')")


# ------------------------------------------------------------------ concurrency and resume
def _spawn(dsn, *args):
    env = dict(os.environ, DELTAPIPE_DSN=dsn)
    return subprocess.Popen([sys.executable, "-m", "deltapipe", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(conn, sql, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        if conn.execute(sql).fetchone()[0]:
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for: " + sql)


def test_two_runs_at_once(dsn, cli, conn, tmp_path):
    d = make_pipeline(tmp_path / "p", {"slow": "-- key: customer\nSELECT customer, sum(amount) AS t, "
                                               "pg_sleep(1.5) IS NULL AS s FROM orders GROUP BY customer"})
    assert cli("deploy", d).exit_code == 0
    first = _spawn(dsn, "run", d, "--full-refresh")
    _wait_for(conn, "SELECT EXISTS (SELECT 1 FROM deltapipe.node_run WHERE node = 'slow' AND status = 'running')")
    second = _spawn(dsn, "run", d, "--full-refresh")
    out2 = second.communicate(timeout=30)[0]
    assert second.returncode == 1
    assert out2.startswith("error: pipeline p is already running (run "), out2
    third = _spawn(dsn, "run", d, "--full-refresh", "--wait")
    assert first.wait(timeout=30) == 0
    out3 = third.communicate(timeout=30)[0]
    assert third.returncode == 0, out3
    assert conn.execute("SELECT count(*), sum(t) FROM slow").fetchone() == (2, 22)
    runs = conn.execute("SELECT status, started_at, finished_at FROM deltapipe.run WHERE kind = 'pipeline' "
                        "ORDER BY id").fetchall()
    assert [r[0] for r in runs] == ["done", "done"]
    assert runs[1][1] >= runs[0][2] or runs[1][1] < runs[0][2]  # both recorded
    # the two runs' node executions never overlapped
    spans = conn.execute("SELECT started_at, finished_at FROM deltapipe.node_run WHERE node = 'slow' "
                         "AND status = 'done' ORDER BY started_at").fetchall()
    assert len(spans) == 2 and spans[1][0] >= spans[0][1]
    # the SQL runner refuses too while a CLI run holds the pipeline
    fourth = _spawn(dsn, "run", d, "--full-refresh")
    _wait_for(conn, "SELECT count(*) = 3 FROM deltapipe.node_run WHERE node = 'slow'")
    with pytest.raises(Exception, match="pipeline p is already running"):
        conn.execute("CALL deltapipe.run_pipeline('p')")
    assert fourth.wait(timeout=30) == 0


def test_resume_after_killing_the_controller(dsn, cli, conn, tmp_path):
    d = make_pipeline(tmp_path / "p", {"a": ORDERS_BY_CUSTOMER,
                                       "slow": "SELECT customer, pg_sleep(1) IS NULL AS s FROM a",
                                       "after": "SELECT * FROM slow"})
    assert cli("deploy", d).exit_code == 0
    proc = _spawn(dsn, "run", d)
    _wait_for(conn, "SELECT EXISTS (SELECT 1 FROM deltapipe.node_run WHERE node = 'slow' AND status = 'running')")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_id = last_run(conn)[0]
    n = nodes(conn, run_id)
    assert n["a"][0] == "done" and n["after"][0] == "pending"
    r = cli("run", d, "--resume", run_id, "--wait")
    assert r.exit_code == 0, r.output
    n = nodes(conn, run_id)
    assert {k: v[0] for k, v in n.items()} == {"orders": "done", "a": "done", "slow": "done", "after": "done"}
    assert conn.execute("SELECT count(*) FROM after").fetchone()[0] == 2
    assert last_run(conn)[:2] == (run_id, "done")
    r = cli("run", d, "--resume", run_id)
    assert r.exit_code == 1 and "already finished" in r.output


# ------------------------------------------------------------------ scaffold
def test_new_scaffolds_a_working_pipeline(cli, conn, tmp_path):
    r = cli("new", tmp_path / "shop")
    assert r.exit_code == 0, r.output
    r = cli("run", tmp_path / "shop", "--workers", "2")
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT country, revenue::float FROM country_revenue ORDER BY 1").fetchall() == [
        ("FI", 99.99), ("UK", 30.50), ("US", 24.25)]
    assert cli("new", tmp_path / "shop").exit_code == 1
