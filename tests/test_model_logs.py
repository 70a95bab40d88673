"""Model change logs (deltapipe_log): typed tables a refresh appends its net change to, read through
deltapipe.changes; created with the model's table, written by writers, read by readers, pruned by
admins; recreated when a model's columns change. Real PostgreSQL, pipelines run through the CLI."""

from __future__ import annotations

import psycopg
from click.testing import CliRunner

from deltapipe.cli import main
from pipeline_helpers import make_pipeline, model_changes
from test_incremental import SOURCES, change, csv, mismatches, node_strategies
from test_roles import as_user, login

MODELS = {
    "big": "-- key: id\nSELECT id, customer, amount * 2 AS dbl FROM orders WHERE amount > 3",
    "by_customer": "SELECT customer, count(*) AS n, sum(dbl) AS total FROM big GROUP BY customer",
}
ORDERS = [("insert", i, "c%d" % (i % 4), i, "2024-01-01") for i in range(1, 30)]
CUSTOMERS = [("insert", "c%d" % k, "r%d" % (k % 2)) for k in range(4)]


def log_of(conn, model):
    return conn.execute("SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner) FROM pg_class c "
                        "WHERE c.relnamespace = 'deltapipe_log'::regnamespace AND c.relname LIKE %s",
                        ("p\\_\\_%s\\_%%" % model,)).fetchone()


def test_written_by_a_writer_read_by_a_reader_pruned_by_an_admin(conn, dsn, tmp_path):
    for name, role in (("dp_log_writer", "deltapipe_writer"), ("dp_log_reader", "deltapipe_reader"),
                       ("dp_log_admin", "deltapipe_admin")):
        login(conn, name, role)
    writer, reader, admin = (as_user(dsn, u) for u in ("dp_log_writer", "dp_log_reader", "dp_log_admin"))
    d = make_pipeline(tmp_path / "p", MODELS, sources=SOURCES, data={
        "data/orders.csv": csv(ORDERS, "op,id,customer,amount,day"),
        "data/customers.csv": csv(CUSTOMERS, "op,name,region")})

    assert CliRunner().invoke(main, ["run", str(d), "--no-timeline", "--dsn", dsn]).exit_code == 0  # an admin deploys
    conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO deltapipe_writer")  # the tables it created

    def run(orders):
        """The writer loads the orders and runs the pipeline's models (CALL deltapipe.run_pipeline)."""
        (d / "data/orders.csv").write_text(csv(orders, "op,id,customer,amount,day"))
        r = CliRunner().invoke(main, ["load", "orders", str(d / "data/orders.csv"), "--dsn", writer])
        assert r.exit_code == 0, r.output
        with psycopg.connect(writer, autocommit=True) as w:
            rid = w.execute("CALL deltapipe.run_pipeline('p', 'sql', '{\"incremental_threshold\": 100}', NULL)").fetchone()[0]
        assert conn.execute("SELECT status FROM deltapipe.run WHERE id = %s", (rid,)).fetchone()[0] == "done"
        return rid

    first = run([("update", 5, "c1", 50, "2024-01-02"), ("delete", 6, None, None, None)])
    assert node_strategies(conn)["big"][1] == "incremental"
    second = run([("update", 7, "c2", 70, "2024-01-02"), ("insert", 40, "c3", 9, "2024-01-02")])
    assert node_strategies(conn)["by_customer"][1] == "incremental"
    assert mismatches(conn) == []
    # the log came with the model's table (the admin's first run), the writer's runs append to it
    table, owner = log_of(conn, "big")
    assert owner == "postgres"
    assert conn.execute("SELECT has_table_privilege('dp_log_writer', %s, 'INSERT'), "
                        "has_table_privilege('dp_log_reader', %s, 'SELECT'), "
                        "has_table_privilege('dp_log_reader', %s, 'INSERT')", (table,) * 3).fetchone() == (True, True, False)
    # typed columns: the new row, then the old one
    assert conn.execute("SELECT array_agg(format('%%s %%s', attname, format_type(atttypid, atttypmod)) ORDER BY attnum) "
                        "FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                        (table,)).fetchone()[0] == [
        '_dp_seq bigint', '_dp_run bigint', '_dp_op "char"', 'id bigint', 'customer text', 'dbl numeric',
        '_dp_o1 bigint', '_dp_o2 text', '_dp_o3 numeric']
    with psycopg.connect(reader, autocommit=True) as r:
        got = r.execute("SELECT op, key, before FROM deltapipe.changes('p', 'big', %s) ORDER BY key->>'id'",
                        (first,)).fetchall()
    assert got == [("U", {"id": 5}, {"id": 5, "customer": "c1", "dbl": 10}),
                   ("D", {"id": 6}, {"id": 6, "customer": "c2", "dbl": 12})]
    # keyless: the new row is the key, an update also has its old row
    assert sorted(model_changes(conn, "by_customer", second, cols="c.op, c.key->>'customer', (c.key->>'n')::int")) == \
        [("U", "c2", 6), ("U", "c3", 6)]  # c3 lost id 7 to c2, gained id 40
    # the admin's maintenance prunes old runs, and their rows in the logs with them
    conn.execute("UPDATE deltapipe.run SET finished_at = now() - interval '90 days' WHERE id <= %s", (first,))
    with psycopg.connect(admin, autocommit=True) as a:
        res = a.execute("CALL deltapipe.maintain('30 days')").fetchone()[0]
    assert res["runs_pruned"] >= 1
    assert conn.execute("SELECT count(*) FROM deltapipe.run WHERE id = %s", (first,)).fetchone()[0] == 0
    assert model_changes(conn, "big", first) == []
    assert conn.execute("SELECT count(*) FROM %s WHERE _dp_run <= %%s" % table, (first,)).fetchone()[0] == 0
    assert len(model_changes(conn, "big", second)) == 2
    run([("update", 8, "c0", 80, "2024-01-03")])
    assert node_strategies(conn)["by_customer"][1] == "incremental"
    assert mismatches(conn) == []


def test_new_columns_make_a_new_log(cli, conn, tmp_path):
    models = dict(MODELS, by_customer="-- key: customer\n" + MODELS["by_customer"])  # keyed: rollback restores it
    d = make_pipeline(tmp_path / "p", models, sources=SOURCES, data={
        "data/orders.csv": csv(ORDERS, "op,id,customer,amount,day"),
        "data/customers.csv": csv(CUSTOMERS, "op,name,region")})
    assert cli("run", d, "--no-timeline").exit_code == 0
    change(cli, d, orders=[("update", 5, "c1", 50, "2024-01-02")], threshold="100")
    table, _ = log_of(conn, "big")
    assert conn.execute("SELECT count(*) FROM %s" % table).fetchone()[0] == 1
    (d / "models/big.sql").write_text("-- key: id\nSELECT id, customer, amount * 2 AS dbl, day FROM orders WHERE amount > 3")
    change(cli, d, orders=[("update", 9, "c3", 90, "2024-01-02")], threshold="100")
    st = node_strategies(conn)
    assert st["big"][1] == "rebuild" and st["by_customer"][1] != "incremental", st
    change(cli, d, orders=[("update", 10, "c0", 100, "2024-01-03"), ("delete", 11, None, None, None)], threshold="100")
    st = node_strategies(conn)
    assert st["big"][1] == "incremental" and st["by_customer"][1] == "incremental", st
    # the log has the model's new columns, and only the changes since
    assert log_of(conn, "big")[0] == table
    assert sorted(model_changes(conn, "big", cols="c.op, c.key->>'id', c.before->>'day'")) == \
        [("D", "11", "2024-01-01"), ("U", "10", "2024-01-01")]
    assert mismatches(conn) == []
    # a run logged in the new log rolls back; the rebuild with new columns and the runs before it do not
    runs = [r[0] for r in conn.execute("SELECT DISTINCT run_id FROM deltapipe.node_run WHERE node = 'big' "
                                       "AND node_kind = 'model' ORDER BY 1").fetchall()]
    before_last = conn.execute("SELECT id, customer, dbl, day FROM big ORDER BY id").fetchall()
    change(cli, d, orders=[("update", 12, "c1", 120, "2024-01-04")], threshold="100")
    assert node_strategies(conn)["big"][1] == "incremental"
    last = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
    r = cli("rollback", last, "--cascade")
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT id, customer, dbl, day FROM big ORDER BY id").fetchall() == before_last
    r = cli("rollback", runs[1], "--cascade")
    assert r.exit_code == 1 and "big got new columns in run %d" % runs[2] in r.output, r.output
    assert conn.execute("SELECT id, customer, dbl, day FROM big ORDER BY id").fetchall() == before_last


def test_changes_of_a_wide_model(cli, conn, tmp_path):
    wide = "-- key: id\nSELECT id, " + ", ".join("amount + %d AS c%d" % (k, k) for k in range(60)) + " FROM orders"
    d = make_pipeline(tmp_path / "p", {"wide": wide}, sources=SOURCES, data={
        "data/orders.csv": csv(ORDERS, "op,id,customer,amount,day"),
        "data/customers.csv": csv(CUSTOMERS, "op,name,region")})
    assert cli("run", d, "--no-timeline").exit_code == 0
    change(cli, d, orders=[("update", 3, "c1", 30, "2024-01-02")], threshold="100")
    assert node_strategies(conn)["wide"][1] == "incremental"
    [(op, key, before)] = model_changes(conn, "wide")
    assert (op, key) == ("U", {"id": 3})
    assert len(before) == 61 and before["c59"] == 3 + 59
    assert mismatches(conn) == []


def test_changes_command_for_models_and_datasets(cli, conn, tmp_path):
    d = make_pipeline(tmp_path / "p", MODELS, sources=SOURCES, data={
        "data/orders.csv": csv(ORDERS, "op,id,customer,amount,day"),
        "data/customers.csv": csv(CUSTOMERS, "op,name,region")})
    assert cli("run", d, "--no-timeline").exit_code == 0
    change(cli, d, orders=[("update", 5, "c1", 50, "2024-01-02"), ("delete", 6, None, None, None)], threshold="100")
    rid = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
    r = cli("changes", "big", "--run", rid)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "model p.big: 2 changes in run %d" % rid
    assert sorted(lines[1:]) == sorted([
        '  run %-6s U  {"id": 5}  before {"id": 5, "dbl": 10, "customer": "c1"}  after {"id": 5, "dbl": 100, "customer": "c1"}'
        % rid,
        '  run %-6s D  {"id": 6}  before {"id": 6, "dbl": 12, "customer": "c2"}' % rid])
    # a source dataset: its loads' changes from deltapipe.changeset; --limit keeps the newest
    r = cli("changes", "orders", "--limit", "1")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "dataset orders: 2 changes, the newest 1:" and len(r.output.splitlines()) == 2
    # an update shows the row after it, a delete only the row before
    lines = {ln.split()[2]: ln for ln in cli("changes", "orders").output.splitlines()[1:]}
    assert lines["U"].endswith('  after {"id": 5, "day": "2024-01-02", "amount": 50, "customer": "c1"}'), lines
    assert '"day": "2024-01-01"' in lines["U"].split("  after ")[0] and "after" not in lines["D"], lines
    r = cli("changes", "nope")
    assert r.exit_code == 1 and r.output.startswith("error: no dataset or model named nope") and "Traceback" not in r.output
