"""Incremental refresh: classification, delta propagation through filter/join/aggregate/distinct models,
fallbacks, and `deltapipe verify`. Real PostgreSQL; sources change through deltapipe's own load path."""

from __future__ import annotations

import pytest

from pipeline_helpers import make_pipeline, model_changes

SOURCES = ('[[sources]]\ndataset = "orders"\nfile = "data/orders.csv"\nkey = "id"\nmode = "changes"\n'
           'op_column = "op"\ncolumns = "id bigint, customer text, amount numeric, day date"\n'
           '[[sources]]\ndataset = "customers"\nfile = "data/customers.csv"\nkey = "name"\nmode = "changes"\n'
           'op_column = "op"\ncolumns = "name text, region text"\n')

MODELS = {
    "big": "SELECT id, customer, amount * 2 AS dbl FROM orders WHERE amount > 3",
    "enriched": "SELECT b.id, b.customer, c.region, b.dbl FROM big b JOIN customers c ON c.name = b.customer",
    "by_region": ("SELECT region, count(*) AS n, sum(dbl) AS total, avg(dbl) AS mean, min(dbl) AS lo, max(dbl) AS hi\n"
                  "FROM enriched GROUP BY region"),
    "regions": "SELECT DISTINCT region FROM enriched",
    "both": "SELECT customer AS who FROM orders UNION ALL SELECT name FROM customers",
    "ranked": "SELECT id,\n  row_number() OVER (ORDER BY id) AS rn FROM orders",
}


def csv(rows, header):
    return header + "\n" + "".join(",".join("" if v is None else str(v) for v in r) + "\n" for r in rows)


def mismatches(conn, pipeline="p"):
    return conn.execute("SELECT model, side, row FROM deltapipe.verify(%s)", (pipeline,)).fetchall()


def setup(tmp_path, cli, orders, customers, models=MODELS):
    d = make_pipeline(tmp_path / "p", models, sources=SOURCES, data={
        "data/orders.csv": csv(orders, "op,id,customer,amount,day"),
        "data/customers.csv": csv(customers, "op,name,region")})
    r = cli("run", d, "--no-timeline")
    assert r.exit_code == 0, r.output
    return d


def change(cli, d, orders=(), customers=(), threshold="1"):
    (d / "data/orders.csv").write_text(csv(orders, "op,id,customer,amount,day"))
    (d / "data/customers.csv").write_text(csv(customers, "op,name,region"))
    r = cli("run", d, "--no-timeline", *(["--incremental-threshold", threshold] if threshold else []))
    assert r.exit_code == 0, r.output
    return r


def node_strategies(conn):
    rid = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
    return {n: (s, st, fb) for n, s, st, fb in conn.execute(
        "SELECT node, status, strategy, full_because FROM deltapipe.node_run WHERE run_id = %s", (rid,)).fetchall()}


def test_plan_says_which_models_are_incremental(cli, tmp_path):
    d = make_pipeline(tmp_path / "p", MODELS, sources=SOURCES, data={
        "data/orders.csv": "op,id,customer,amount,day\n", "data/customers.csv": "op,name,region\n"})
    r = cli("plan", d)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    def refresh_of(node):
        i = next(i for i, ln in enumerate(lines) if (" %s " % node) in ln)
        return lines[i + 1].split("refresh: ", 1)[1]
    assert refresh_of("big") == "incremental (linear)"
    assert refresh_of("enriched") == "incremental (linear)"
    assert refresh_of("by_region") == "incremental (aggregate)"
    assert refresh_of("regions") == "incremental (distinct)"
    assert refresh_of("both") == "incremental (linear)"
    assert refresh_of("ranked") == "full: window function row_number without PARTITION BY at line 2"


def test_changes_propagate_incrementally_and_match_a_full_recompute(cli, conn, tmp_path):
    d = setup(tmp_path, cli,
              [("insert", i, "c%d" % (i % 4), i, "2024-01-01") for i in range(1, 21)],
              [("insert", "c0", "north"), ("insert", "c1", "south"), ("insert", "c2", None), ("insert", "c3", "south")])
    assert mismatches(conn) == []
    # delete the current max of a group, update a join key and a group key, insert+delete the same row
    change(cli, d, orders=[("delete", 20, None, None, None), ("update", 5, "c2", 50, "2024-01-02"),
                           ("insert", 99, "c1", 7, "2024-01-03"), ("delete", 99, None, None, None)],
           customers=[("update", "c3", "north"), ("insert", "c9", "east")])
    st = node_strategies(conn)
    for n in ("big", "enriched", "by_region", "regions", "both"):
        assert st[n][1] == "incremental", (n, st[n])
    assert st["ranked"][1] != "incremental" and st["ranked"][2] == "window function row_number without PARTITION BY at line 2"
    assert mismatches(conn) == []
    # the id inserted and deleted in one batch left no trace in any change log of the run
    rid = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
    logged = conn.execute("SELECT m.name, c.key, c.before FROM deltapipe.model m, deltapipe.changes(m.pipeline, m.name, %s) c",
                          (rid,)).fetchall()
    assert {n for n, _k, _b in logged} >= {"big", "enriched"}
    assert [r for r in logged if 99 in ((r[1] or {}).get("id"), (r[2] or {}).get("id"))] == []
    # group of region south lost its max; NULL region group is matched correctly
    rows = dict((r[0], r[1:]) for r in conn.execute("SELECT region, n, total, lo, hi FROM by_region").fetchall())
    full = dict((r[0], r[1:]) for r in conn.execute(
        "SELECT c.region, count(*), sum(o.amount * 2), min(o.amount * 2), max(o.amount * 2) FROM orders o "
        "JOIN customers c ON c.name = o.customer WHERE o.amount > 3 GROUP BY c.region").fetchall())
    assert rows == full
    # both sides of the join change at once, and a group empties
    change(cli, d, orders=[("update", i, "c0", i, "2024-01-01") for i in range(1, 8)],
           customers=[("update", "c0", "west"), ("delete", "c2", None)])
    assert node_strategies(conn)["enriched"][1] == "incremental"
    assert mismatches(conn) == []
    # empty delta: nothing runs and nothing changes
    change(cli, d)
    assert mismatches(conn) == []


def test_large_change_falls_back_to_full_refresh_with_net_delta(cli, conn, tmp_path):
    d = setup(tmp_path, cli, [("insert", i, "c%d" % (i % 2), i, "2024-01-01") for i in range(1, 11)],
              [("insert", "c0", "north"), ("insert", "c1", "south")])
    change(cli, d, orders=[("update", i, "c%d" % (i % 2), i + 100, "2024-01-01") for i in range(1, 6)], threshold=None)
    st = node_strategies(conn)
    assert st["big"][1] in ("merge", "swap") and "more than 15" in st["big"][2]
    assert mismatches(conn) == []
    rid = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
    # only the changed rows are in big's change log (its key, id, is inferred from orders' key):
    # ids 1-3 enter the filter, ids 4-5 change
    assert sorted(model_changes(conn, "big", rid, cols="c.op, (coalesce(c.before, c.key)->>'id')::int")) == \
        [("I", 1), ("I", 2), ("I", 3), ("U", 4), ("U", 5)]


def test_small_table_rebuilt_outside_a_full_refresh_is_changed_in_place(cli, conn, tmp_path):
    """A model of at most 10,000 rows that an incremental run refreshes in full (here: window
    functions) is built as a temporary table and changed in place, keyless copies too: the table
    is neither dropped nor created (its oid stays); a new shape or --full-refresh still swaps."""
    models = {"dups": "SELECT customer,\n  count(*) OVER () AS n FROM orders",
              "ranked": "-- key: id\nSELECT id,\n  row_number() OVER (ORDER BY id) AS rn FROM orders"}
    d = setup(tmp_path, cli, [("insert", i, "c%d" % (i % 3), i, "2024-01-01") for i in range(1, 13)],
              [("insert", "c0", "north")], models=models)
    oids = {n: conn.execute("SELECT %s::regclass::oid", (n,)).fetchone()[0] for n in models}
    change(cli, d, orders=[("delete", 3, None, None, None), ("update", 4, "c2", 4, "2024-01-01"),
                           ("insert", 20, "c0", 1, "2024-01-01")])
    st = node_strategies(conn)
    assert st["dups"][1] == "merge" and st["ranked"][1] == "merge", st
    assert {n: conn.execute("SELECT %s::regclass::oid", (n,)).fetchone()[0] for n in models} == oids
    assert mismatches(conn) == []
    rid = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
    # dups: still 12 rows (3 gone, 20 new, both c0: the same copy), order 4 moves from c1 to c2
    assert sorted(model_changes(conn, "dups", rid, cols="c.op, c.key->>'customer', (c.key->>'n')::int")) == \
        [("D", "c1", 12), ("I", "c2", 12)]
    # a new shape is swapped in; so is every model of a full refresh
    (d / "models" / "dups.sql").write_text("SELECT customer, 1 AS one,\n  count(*) OVER (PARTITION BY customer) AS n FROM orders")
    change(cli, d, orders=[("update", 5, "c0", 5, "2024-01-01")])
    assert node_strategies(conn)["dups"][1] == "rebuild"
    assert mismatches(conn) == []
    (d / "data/orders.csv").write_text(csv([("delete", 1, None, None, None)], "op,id,customer,amount,day"))
    r = cli("run", d, "--no-timeline", "--full-refresh")
    assert r.exit_code == 0, r.output
    assert node_strategies(conn)["ranked"][1] == "swap"
    assert mismatches(conn) == []


def test_verify_reports_mismatching_rows(cli, conn, tmp_path):
    d = setup(tmp_path, cli, [("insert", i, "c%d" % (i % 2), i, "2024-01-01") for i in range(1, 11)],
              [("insert", "c0", "north"), ("insert", "c1", "south")])
    r = cli("verify")
    assert r.exit_code == 0, r.output
    assert "ok" in r.output
    # a model's table refuses writes by hand (DP704): tamper with it as deltapipe's own writer would
    conn.execute("SET deltapipe.writer = 'test'")
    conn.execute("UPDATE big SET dbl = 0 WHERE id = 4")
    conn.execute("RESET deltapipe.writer")
    r = cli("verify", "big")
    assert r.exit_code == 1, r.output
    assert '- {"id": 4, "dbl": 8, "customer": "c0"}' in r.output
    assert '+ {"id": 4, "dbl": 0, "customer": "c0"}' in r.output
    assert "error: 1 model(s) differ from a full recompute: big" in r.output


def _group_by_amount(cli, conn, tmp_path, groups):
    """A group whose key is 1.0 gets a row whose key is 1.00: equal numbers, different text."""
    models = {"by_amount": "SELECT amount, count(*) AS n FROM orders GROUP BY amount"}
    orders = [("insert", 1, "c0", "1.0", "2024-01-01")] + [
        ("insert", i, "c1", str(i + 8), "2024-01-01") for i in range(2, groups + 1)]
    d = setup(tmp_path, cli, orders, [("insert", "c0", "north")], models=models)
    change(cli, d, [("insert", 100, "c0", "1.00", "2024-01-02")])
    assert node_strategies(conn)["by_amount"][1] == "incremental"
    assert conn.execute("SELECT count(*), sum(n) FROM by_amount WHERE amount = 1").fetchone() == (1, 2)
    assert mismatches(conn) == []


def test_equal_group_keys_with_different_text_meet_when_the_delta_joins_by_hash(cli, conn, tmp_path):
    # 3 groups, a 1-row delta: the group deltas join the table on the group columns (=)
    _group_by_amount(cli, conn, tmp_path, 3)


def test_equal_group_keys_with_different_text_meet_when_the_delta_probes(cli, conn, tmp_path):
    # 40 groups, a 1-row delta: the group deltas probe the table's index on the group values' hash
    _group_by_amount(cli, conn, tmp_path, 40)
    assert conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'by_amount' "
                        "AND indexdef LIKE '%hash_record_extended(ROW(amount)%'").fetchone()[0] == 1


@pytest.mark.parametrize("groups", [3, 40])  # the group deltas join the table by =, or probe its index
def test_a_recomputed_max_keeps_its_group_when_the_key_is_written_otherwise(cli, conn, tmp_path, groups):
    """The group 1.0 (written so by its first row) loses its max, held by that row: it is recomputed
    from its other row, written 1.00, and stays one group with the key its row has."""
    models = {"by_amount": "SELECT amount, count(*) AS n, max(id) AS top FROM orders GROUP BY amount"}
    orders = [("insert", 9, "c0", "1.0", "2024-01-01"), ("insert", 5, "c0", "1.00", "2024-01-01")] + [
        ("insert", i + 10, "c1", str(i + 8), "2024-01-01") for i in range(2, groups + 1)]
    d = setup(tmp_path, cli, orders, [("insert", "c0", "north")], models=models)
    assert conn.execute("SELECT amount::text, n, top FROM by_amount WHERE amount = 1").fetchall() == [("1.0", 2, 9)]
    change(cli, d, [("delete", 9, None, None, None)])
    assert node_strategies(conn)["by_amount"][1] == "incremental"
    assert conn.execute("SELECT amount::text, n, top FROM by_amount WHERE amount = 1").fetchall() == [("1.0", 1, 5)]
    assert mismatches(conn) == []


@pytest.mark.parametrize("grouped", [True, False])
def test_min_max_ignore_a_value_that_both_join_sides_changing_add_and_remove(cli, conn, tmp_path, grouped):
    """Order 12 moves from c0 (amount 7) to c3 (no amount) while c0 becomes a customer (in a new region): the
    join's change holds +7 (the old order x the new customer) and -7 (the order's old version x the customers
    now), which cancel. The max of the region (or of
    the whole join, without GROUP BY) must not take that 7: the group had no value before (new group, or one
    of NULLs only), so it is recomputed."""
    models = {"tops": ("SELECT %s max(o.amount) AS top, min(o.amount) AS low, count(*) AS n\n"
                       "FROM orders o JOIN customers c ON c.name = o.customer%s")
              % (("c.region,", " GROUP BY c.region") if grouped else ("", ""))}
    # c0 is not a customer yet: order 12 (c0, 7) joins nothing
    d = setup(tmp_path, cli, [("insert", 6, "c0", None, "2024-01-01"), ("insert", 12, "c0", 7, "2024-01-01")],
              [("insert", "c3", "north")], models=models)
    change(cli, d, [("delete", 12, None, None, None), ("insert", 12, "c3", None, "2024-01-01")],
           [("insert", "c0", "south")])
    assert node_strategies(conn)["tops"][1] == "incremental"
    assert mismatches(conn) == []
    rows = conn.execute("SELECT top, low, n FROM public.tops%s" % (" WHERE region = 'south'" if grouped else "")).fetchall()
    assert rows == [(None, None, 1 if grouped else 2)]


def test_a_top_n_model_is_split_into_its_maintained_input_and_its_first_rows(cli, conn, tmp_path):
    """ORDER BY ... LIMIT over an aggregate: plan shows the input model NAME__input (aggregate) and the
    model (top-N of it); a change that pushes a row out of the top refreshes both incrementally; removing
    the LIMIT removes the input model and its table."""
    models = {"top2": ("-- the two best customers\nSELECT customer, sum(amount) AS total FROM orders\n"
                       "WHERE customer IS NOT NULL GROUP BY customer ORDER BY total DESC, customer LIMIT 2")}
    d = setup(tmp_path, cli, [("insert", i, "c%d" % (i % 4), i, "2024-01-01") for i in range(1, 13)],
              [("insert", "c0", "north")], models=models)
    r = cli("plan", d)
    assert r.exit_code == 0, r.output
    assert "refresh: incremental (top-N of top2__input)" in r.output
    assert "refresh: incremental (aggregate)" in r.output
    assert "ORDER BY total DESC, customer LIMIT 2: the first 2 rows of top2__input" in r.output
    assert conn.execute("SELECT customer, total FROM public.top2 ORDER BY total DESC").fetchall() == [
        ("c0", 24), ("c3", 21)]
    # c1 overtakes both; c3 drops out of the top when its biggest order goes
    change(cli, d, [("insert", 50, "c1", 30, "2024-01-02"), ("delete", 11, None, None, None)])
    st = node_strategies(conn)
    assert st["top2"][1] == "incremental" and st["top2__input"][1] == "incremental", st
    assert conn.execute("SELECT customer, total FROM public.top2 ORDER BY total DESC").fetchall() == [
        ("c1", 45), ("c0", 24)]
    assert mismatches(conn) == []
    # the docs site and the run report know both models
    r = cli("docs", "-o", tmp_path / "site")
    assert r.exit_code == 0, r.output
    assert "top2__input" in (tmp_path / "site" / "index.html").read_text()
    # without its LIMIT the model is not split: the input model and its table go
    (d / "models" / "top2.sql").write_text("SELECT customer, sum(amount) AS total FROM orders GROUP BY customer")
    r = cli("run", d, "--no-timeline")
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT to_regclass('public.top2__input')").fetchone()[0] is None
    assert conn.execute("SELECT count(*) FROM deltapipe.model WHERE name = 'top2__input'").fetchone()[0] == 0
    assert mismatches(conn) == []


def test_a_scalar_subquery_is_a_constant_while_its_value_does_not_change(cli, conn, tmp_path):
    """amount > (SELECT avg(amount) ...): a change that keeps the average refreshes incrementally; one that
    moves it refreshes in full, and says why."""
    models = {"above": "SELECT id, customer, amount FROM orders WHERE amount > (SELECT avg(amount) FROM orders)"}
    d = setup(tmp_path, cli, [("insert", i, "c%d" % (i % 4), i, "2024-01-01") for i in range(1, 10)],
              [("insert", "c0", "north")], models=models)
    r = cli("plan", d)
    assert "scalar subquery at line 1: a constant while its value does not change" in r.output, r.output
    # 4 -> 6 and 6 -> 4: the average stays 5, order 4 enters and order 6 leaves
    change(cli, d, [("update", 4, "c0", 6, "2024-01-01"), ("update", 6, "c2", 4, "2024-01-01")])
    assert node_strategies(conn)["above"][1] == "incremental"
    assert conn.execute("SELECT array_agg(id ORDER BY id) FROM public.above").fetchone()[0] == [4, 7, 8, 9]
    assert mismatches(conn) == []
    # a new order moves the average: a full refresh
    change(cli, d, [("insert", 10, "c1", 100, "2024-01-01")])
    st = node_strategies(conn)["above"]
    assert st[1] != "incremental" and st[2] == "the value of the scalar subquery at line 1 changed", st
    assert mismatches(conn) == []


def test_not_in_keeps_sql_null_semantics(cli, conn, tmp_path):
    """x NOT IN (SELECT y ...): a change that leaves the subquery's NULLs and emptiness alone refreshes
    incrementally; a NULL appearing on the inner side empties the model, the subquery emptying fills it
    (both by a full refresh, saying why); a NULL x is in no row while the subquery has rows."""
    models = {"not_big": ("SELECT o.id, o.customer FROM orders o\n"
                          "WHERE o.customer NOT IN (SELECT p.customer FROM orders p WHERE p.amount > 7)")}
    d = setup(tmp_path, cli, [("insert", 1, "c1", 9, "2024-01-01"), ("insert", 2, "c2", 1, "2024-01-01"),
                              ("insert", 3, None, 1, "2024-01-01"), ("insert", 4, "c3", 2, "2024-01-01")],
              [("insert", "c0", "north")], models=models)
    ids = lambda: conn.execute("SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM public.not_big").fetchone()[0]
    assert ids() == [2, 4]
    change(cli, d, [("update", 4, "c1", 2, "2024-01-01")])          # c1 is in the subquery: 4 leaves
    assert node_strategies(conn)["not_big"][1] == "incremental"
    assert ids() == [2]
    change(cli, d, [("insert", 5, None, 8, "2024-01-01")])          # a NULL on the inner side: no row at all
    st = node_strategies(conn)["not_big"]
    assert st[1] != "incremental" and st[2] == "NOT IN: whether its subquery holds a NULL at line 2 changed", st
    assert ids() == []
    change(cli, d, [("delete", 5, None, None, None), ("delete", 1, None, None, None)])   # the subquery empties
    assert ids() == [1, 2, 3, 4][1:] and mismatches(conn) == []
