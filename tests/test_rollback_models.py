"""Rollback of a pipeline run that refreshed models incrementally: the models come back as
they were, and later incremental runs still equal a full recompute."""

from __future__ import annotations

from test_incremental import change, csv, mismatches, node_strategies, setup

MODELS = {
    "big": "-- key: id\nSELECT id, customer, amount * 2 AS dbl FROM orders WHERE amount > 3",
    "enriched": "-- key: id\nSELECT b.id, b.customer, c.region, b.dbl FROM big b JOIN customers c ON c.name = b.customer",
    "by_region": "-- key: region\nSELECT region, count(*) AS n, sum(dbl) AS total, max(dbl) AS hi FROM enriched GROUP BY region",
}


def models(conn):
    return {m: sorted(conn.execute("SELECT * FROM %s" % m).fetchall(), key=repr) for m in MODELS}


def test_rollback_of_an_incremental_run_then_more_runs(cli, conn, tmp_path):
    orders = [("insert", i, "c%d" % (i % 5), i, "2024-01-01") for i in range(1, 60)]
    customers = [("insert", "c%d" % k, "r%d" % (k % 2)) for k in range(5)]
    d = setup(tmp_path, cli, orders, customers, MODELS)
    change(cli, d, orders=[("update", 7, "c1", 70, "2024-01-02"), ("delete", 8, None, None, None),
                           ("insert", 100, "c2", 9, "2024-01-03")])
    before = models(conn)
    assert mismatches(conn) == []
    r = change(cli, d, orders=[("update", 7, "c3", 71, "2024-01-02"), ("update", 9, "c4", 1, "2024-01-02"),
                               ("delete", 10, None, None, None), ("insert", 101, "c0", 50, "2024-01-03")],
               customers=[("update", "c3", "r9")])
    assert r.exit_code == 0
    run = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
    strategies = dict(conn.execute("SELECT node, strategy FROM deltapipe.node_run WHERE run_id = %s", (run,)).fetchall())
    assert strategies["big"] == "incremental", strategies
    # the loads of the run are runs of their own, later than it: --cascade rolls them back too
    r = cli("rollback", str(run), "--cascade")
    assert r.exit_code == 0, r.output
    assert models(conn) == before  # row hashes and hidden aggregate state included
    assert mismatches(conn) == []
    change(cli, d, orders=[("update", 7, "c4", 5, "2024-01-05"), ("update", 11, "c1", 99, "2024-01-05")])
    assert mismatches(conn) == []
    r = cli("run", d, "--no-timeline", "--full-refresh")
    assert r.exit_code == 0, r.output
    assert mismatches(conn) == []


def test_rollback_of_a_run_whose_downstream_failed(cli, conn, tmp_path):
    """big changes in a run whose downstream model fails its audit; rolling that run back restores big,
    and down, which never saw the change, must not pick it up from big's change log later."""
    models = {"big": MODELS["big"],
              "down": ("-- key: id\n-- audit: accepted_values(customer, 'c0', 'c1', 'c2', 'c3', 'c4')\n"
                       "SELECT id, customer, dbl FROM big")}
    orders = [("insert", i, "c%d" % (i % 5), i, "2024-01-01") for i in range(1, 30)]
    customers = [("insert", "c%d" % k, "r%d" % (k % 2)) for k in range(5)]
    d = setup(tmp_path, cli, orders, customers, models)
    (d / "data/orders.csv").write_text(csv([("update", 7, "zz", 70, "2024-01-02"), ("update", 9, "c1", 90, "2024-01-02")],
                                           "op,id,customer,amount,day"))
    (d / "data/customers.csv").write_text("op,name,region\n")
    r = cli("run", d, "--no-timeline", "--incremental-threshold", "1")
    assert r.exit_code != 0 and "blocking audit failed" in r.output, (r.exit_code, r.output)
    st = node_strategies(conn)
    assert st["big"][1] == "incremental" and st["down"][0] == "failed", st
    run = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
    r = cli("rollback", str(run), "--cascade")
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT customer, dbl FROM big WHERE id = 7").fetchone() == ("c2", 14)
    # a later run with a change of its own: down gets that change, not the rolled-back one
    change(cli, d, orders=[("update", 11, "c3", 110, "2024-01-03")])
    st = node_strategies(conn)
    assert st["down"][0] == "done", st
    assert conn.execute("SELECT customer, dbl FROM down WHERE id = 7").fetchone() == ("c2", 14)
    assert mismatches(conn) == []


KEYED = {
    "big": "-- key: id\nSELECT id, customer, amount * 2 AS dbl FROM orders WHERE amount > 3",
    "enriched": "-- key: id\nSELECT b.id, c.region, b.dbl FROM big b JOIN customers c ON c.name = b.customer",
    "by_region": "-- key: region\nSELECT region, count(*) AS n, sum(dbl) AS total FROM enriched WHERE region IS NOT NULL GROUP BY region",
}


def test_random_runs_and_rollbacks_keep_models_equal_to_a_recompute(cli, conn, tmp_path):
    """Property: whatever runs and rollbacks of the last pipeline run (with its loads) happen, every
    model equals a full recompute afterwards, and later incremental runs keep it so."""
    import os
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    orders = [("insert", i, "c%d" % (i % 4), i, "2024-01-01") for i in range(1, 16)]
    customers = [("insert", "c%d" % k, "r%d" % (k % 2)) for k in range(4)]
    d = setup(tmp_path, cli, orders, customers, KEYED)
    order_op = st.tuples(st.sampled_from(["update", "delete", "upsert"]), st.integers(1, 18),
                         st.sampled_from(["c0", "c1", "c2", "c3"]), st.integers(0, 9))
    cust_op = st.tuples(st.sampled_from(["c0", "c1", "c2", "c3"]), st.sampled_from(["r0", "r1", "r2"]))
    steps = st.lists(st.tuples(st.lists(order_op, max_size=5), st.lists(cust_op, max_size=2), st.booleans()),
                     min_size=1, max_size=4)

    @settings(max_examples=int(os.environ.get("DELTAPIPE_HYPOTHESIS_EXAMPLES", "5")), deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(steps)
    def prop(ss):
        for ords, custs, undo in ss:
            change(cli, d, orders=[(op, i, c, a, "2024-01-02") if op != "delete" else (op, i, None, None, None)
                                   for op, i, c, a in ords],
                   customers=[("upsert", n, r) for n, r in custs])
            assert mismatches(conn) == []
            if undo:
                run = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline' "
                                   "AND status <> 'rolled_back'").fetchone()[0]
                r = cli("rollback", str(run), "--cascade")
                assert r.exit_code == 0, r.output
                assert mismatches(conn) == []
    prop()


def test_the_same_change_again_after_a_rollback(cli, conn, tmp_path):
    """A run is rolled back, then the very same change is loaded again: the models must take it
    (the inputs equal those of the rolled-back run, whose results are gone: no skip)."""
    orders = [("insert", i, "c%d" % (i % 4), i, "2024-01-01") for i in range(1, 16)]
    customers = [("insert", "c%d" % k, "r%d" % (k % 2)) for k in range(4)]
    d = setup(tmp_path, cli, orders, customers, KEYED)
    for attempt in range(2):
        change(cli, d, orders=[("update", 5, "c2", 50, "2024-01-02")], customers=[("upsert", "c3", "r2")])
        assert conn.execute("SELECT region FROM enriched WHERE id = 7").fetchone() == ("r2",)
        assert mismatches(conn) == []
        if attempt == 0:
            run = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
            assert cli("rollback", str(run), "--cascade").exit_code == 0
            assert conn.execute("SELECT region FROM enriched WHERE id = 7").fetchone() == ("r1",)
    assert node_strategies(conn)["enriched"][0] == "done"
