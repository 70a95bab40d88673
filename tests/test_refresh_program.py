"""Compiled refresh programs: deploy stores each incremental model's refresh statements
(model.program.steps), and one generic executor in SQL (deltapipe._refresh_program) runs them."""

from __future__ import annotations

import json

from test_incremental import change, mismatches, node_strategies, setup

MODELS = {
    "big": "SELECT id, customer, amount * 2 AS dbl FROM orders WHERE amount > 3",
    "by_customer": "SELECT customer, count(*) AS n, sum(amount) AS total, max(amount) AS hi FROM orders GROUP BY customer",
    "loose": "SELECT customer, amount FROM orders WHERE amount IS NOT NULL",
    # the full-text search operator @@ in the model's own SQL is not a placeholder
    "matching": ("-- key: id\nSELECT id, customer FROM orders "
                 "WHERE to_tsvector('simple', coalesce(customer, '')) @@ to_tsquery('simple', 'c1 | c2')"),
}

ORDERS = [("insert", i, "c%d" % (i % 4), i % 7, "2024-01-01") for i in range(1, 13)]
CUSTOMERS = [("insert", "c%d" % k, "north" if k % 2 else "south") for k in range(4)]


def test_deploy_stores_each_incremental_models_statements(cli, conn, tmp_path):
    setup(tmp_path, cli, ORDERS, CUSTOMERS, MODELS)
    rows = conn.execute("SELECT name, shape, program, format('%I.%I', target_schema, target_table) "
                        "FROM deltapipe.model WHERE pipeline = 'p' ORDER BY name").fetchall()
    assert {r[0] for r in rows} == set(MODELS)
    for name, shape, prog, table in rows:
        assert prog["steps"], name
        assert all(isinstance(s["sql"], str) and s["sql"] for s in prog["steps"])
        # compiled for the table's columns: visible ones, then the hidden state
        cols = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
            "AND attname <> '_dp_hash' ORDER BY attnum", (table,)).fetchall()]
        assert prog["cols"] == cols, name
    by = {r[0]: r for r in rows}
    assert by["by_customer"][1] == "aggregate"
    assert any("_dp_gd" in s["sql"] for s in by["by_customer"][2]["steps"])
    assert any(s["sql"].startswith("MERGE INTO @@target@@") for s in by["big"][2]["steps"])


def test_the_executor_runs_the_programs_incrementally(cli, conn, tmp_path):
    d = setup(tmp_path, cli, ORDERS, CUSTOMERS, MODELS)
    change(cli, d, [("update", 2, "c1", 9, "2024-01-01"), ("delete", 5, None, None, None),
                    ("insert", 30, None, 6, "2024-01-02"), ("update", 6, "c2", None, "2024-01-01")])
    st = node_strategies(conn)
    for name in MODELS:
        assert st[name][1] == "incremental", (name, st[name])
    assert mismatches(conn) == []
    # the max of c1 was recomputed when its maximum left; a group emptied and refilled
    change(cli, d, [("delete", 2, None, None, None), ("update", 1, "c9", 1, "2024-01-01")])
    assert all(node_strategies(conn)[n][1] == "incremental" for n in MODELS)
    assert mismatches(conn) == []


def test_a_program_of_an_older_deltapipe_refreshes_in_full_until_deployed_again(cli, conn, tmp_path):
    d = setup(tmp_path, cli, ORDERS, CUSTOMERS, MODELS)
    conn.execute("UPDATE deltapipe.model SET program = program - 'steps' WHERE name = 'big'")
    conn.execute("UPDATE deltapipe.model SET compile_key = 'old' WHERE name = 'big'")
    conn.execute("""SELECT deltapipe.ingest('orders', '[{"id": 3, "customer": "c0", "amount": 5, "day": "2024-01-01"}]')""")
    # CALL deltapipe.run_pipeline runs without deploying: the old program refreshes in full, saying why
    conn.execute("""CALL deltapipe.run_pipeline('p', p_options => '{"incremental_threshold": 1}')""")
    st = node_strategies(conn)
    assert st["big"][1] != "incremental" and "deploy the pipeline again" in st["big"][2]
    assert mismatches(conn) == []
    # deltapipe run deploys first: compiled again, incremental again
    change(cli, d, [("update", 3, "c1", 6, "2024-01-01")])
    assert node_strategies(conn)["big"][1] == "incremental"
    assert mismatches(conn) == []


def test_a_table_of_other_columns_than_its_program_refreshes_in_full(cli, conn, tmp_path):
    d = setup(tmp_path, cli, ORDERS, CUSTOMERS, MODELS)
    conn.execute("UPDATE deltapipe.model SET program = jsonb_set(program, '{cols}', %s) WHERE name = 'loose'",
                 (json.dumps(["amount", "customer"]),))
    change(cli, d, [("update", 4, "c3", 4, "2024-01-01")])
    st = node_strategies(conn)
    # (deploy reuses the stored program: its compile key did not change)
    assert st["loose"][1] != "incremental"
    assert "not those its refresh was compiled for" in st["loose"][2]
    assert mismatches(conn) == []


def test_placeholders_are_filled_once(conn):
    text = conn.execute("SELECT deltapipe._program_text(%s, %s)",
                        ("SELECT @@a@@, '@@b@@', x @@ y, @@nope@@, @@@@ @@", json.dumps({"a": "@@b@@", "b": 2}))).fetchone()[0]
    assert text == "SELECT @@b@@, '2', x @@ y, @@nope@@, @@@@ @@"
    assert conn.execute("SELECT deltapipe._program_text('@@n@@ IS NULL', '{\"n\": null}')").fetchone()[0] == "NULL IS NULL"


def test_the_executor_keeps_results_counts_and_conditions(conn):
    steps = [{"sql": "CREATE TEMP TABLE _t AS SELECT g FROM generate_series(1, @@n@@) g", "count": "made"},
             {"sql": "SELECT count(*) AS c, @@made@@ > 2 AS big FROM _t", "into": True, "phase": "one"},
             {"if": "@@big@@", "sql": "INSERT INTO _t VALUES (100)", "count": "added"},
             {"if": "NOT @@big@@", "sql": "INSERT INTO _t VALUES (-1)", "count": "other"},
             {"sql": "SELECT 'stop here' AS fallback WHERE @@c@@ > 10", "into": True},
             {"sql": "DROP TABLE _t"}]
    with conn.transaction():
        v = conn.execute("SELECT deltapipe._refresh_program(%s, %s)", (json.dumps(steps), json.dumps({"n": 3}))).fetchone()[0]
    assert v["made"] == 3 and v["c"] == 3 and v["big"] is True and v["added"] == 1 and "other" not in v
    assert set(v["phases"]) == {"one"}
    steps[0]["sql"] = steps[0]["sql"].replace("_t", "_u")
    with conn.transaction():
        v = conn.execute("SELECT deltapipe._refresh_program(%s, %s)",
                         (json.dumps([steps[0], {"sql": "SELECT 'too many' AS fallback FROM _u HAVING count(*) > 10",
                                                 "into": True}, {"sql": "SELECT 1/0"}]),
                          json.dumps({"n": 20}))).fetchone()[0]
    assert v == {"fallback": "too many"}
