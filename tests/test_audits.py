"""Audits on models: built-in and custom audits block publishing (the table keeps its last good state), warn
audits record and continue, downstream nodes do not run, `deltapipe runs show` shows offending rows, and
`deltapipe plan` says which models change shape. Real PostgreSQL, through the CLI, on both refresh paths."""

from __future__ import annotations

import pytest

from pipeline_helpers import make_pipeline, model_changes

SOURCES = ('[[sources]]\ndataset = "orders"\nfile = "data/orders.csv"\nkey = "id"\nmode = "changes"\n'
           'op_column = "op"\ncolumns = "id bigint, customer text, amount numeric, status text, code text"\n'
           '[[sources]]\ndataset = "customers"\nfile = "data/customers.csv"\nkey = "name"\n'
           'columns = "name text, region text"\n')
HEADER = "op,id,customer,amount,status,code"
GOOD = [("insert", i, "c%d" % (i % 3), i * 10, "new" if i % 2 else "paid", "k%d" % i) for i in range(1, 21)]
CUSTOMERS = "name,region\nc0,north\nc1,south\nc2,east\n"
# the model's SELECT: incremental (linear) or refreshed in full (a window function)
SELECTS = {
    "incremental": "SELECT id, customer, amount, status, code FROM orders WHERE id > 0\n",
    "full": "SELECT id, customer, amount, status, code,\n  row_number() OVER (ORDER BY id) AS rn FROM orders\n",
}


def csv(rows):
    return HEADER + "\n" + "".join(",".join("" if v is None else str(v) for v in r) + "\n" for r in rows)


def setup(tmp_path, cli, audits: str, path: str = "incremental", extra: dict | None = None, audit_file: str | None = None):
    models = {"clean": "-- key: id\n" + audits + SELECTS[path], **(extra or {})}
    d = make_pipeline(tmp_path / "p", models, sources=SOURCES,
                      data={"data/orders.csv": csv(GOOD), "data/customers.csv": CUSTOMERS})
    if audit_file is not None:
        (d / "models" / "clean.audits.sql").write_text(audit_file)
    r = cli("run", d, "--no-timeline")
    assert r.exit_code == 0, r.output
    return d


def snapshot(conn, table="clean"):
    return sorted(conn.execute("SELECT to_jsonb(t) - '_dp_hash' FROM %s t" % table).fetchall(), key=str)


def rerun(cli, d, changes):
    (d / "data/orders.csv").write_text(csv(changes))
    return cli("run", d, "--no-timeline", "--incremental-threshold", "1")


def last_nodes(conn):
    rid = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
    return rid, {r[0]: r[1:] for r in conn.execute(
        "SELECT node, status, error, sqlstate, skip_reason, phases, strategy FROM deltapipe.node_run WHERE run_id = %s",
        (rid,)).fetchall()}


BLOCKING = [
    ("unique(code)", [("insert", 21, "c1", 5, "new", "k3")], "unique(code)", 2),
    ("not_null(customer)", [("insert", 21, None, 5, "new", "k21"), ("insert", 22, None, 6, "new", "k22")],
     "not_null(customer)", 2),
    ("accepted_values(status, 'new', 'paid')", [("insert", 21, "c1", 5, "lost", "k21")], "accepted_values(status)", 1),
    ("relationships(customer, customers.name)", [("update", 4, "zed", 40, "paid", "k4")],
     "relationships(customer, customers.name)", 1),
    ("amount_positive: select * from this where amount < 0", [("update", 2, "c2", -5, "paid", "k2")],
     "amount_positive", 1),
]


@pytest.mark.parametrize("path", ["incremental", "full"])
@pytest.mark.parametrize("spec, changes, name, count", BLOCKING, ids=[b[2].split("(")[0] for b in BLOCKING])
def test_blocking_audit_keeps_the_last_good_table(cli, conn, tmp_path, path, spec, changes, name, count):
    d = setup(tmp_path, cli, "-- audit: %s\n" % spec, path)
    before = snapshot(conn)
    assert len(before) == 20
    checksum = conn.execute("SELECT checksum, row_count FROM deltapipe.model WHERE name = 'clean'").fetchone()
    r = rerun(cli, d, changes)
    assert r.exit_code == 1, r.output
    expected = "model clean: blocking audit failed: %s (%d offending row%s)" % (name, count, "" if count == 1 else "s")
    assert expected in r.output
    rid, nodes = last_nodes(conn)
    status, error, sqlstate, _skip, phases, _strategy = nodes["clean"]
    assert (status, sqlstate) == ("failed", "DP501") and error.startswith(expected)
    # the refresh path taken: incremental (from the inputs' changes) or full (build, then diff)
    assert ("inputs" in phases) == (path == "incremental") and ("build" in phases) == (path == "full")
    assert snapshot(conn) == before
    assert conn.execute("SELECT checksum, row_count FROM deltapipe.model WHERE name = 'clean'").fetchone() == checksum
    assert model_changes(conn, "clean", rid) == []
    res = conn.execute("SELECT audit, blocking, failing_rows, jsonb_array_length(sample) FROM deltapipe.audit_result "
                       "WHERE run_id = %s AND node = 'clean'", (rid,)).fetchall()
    assert res == [(name, True, count, count)]
    # fixed data: the next run publishes (and the watermark did not move past the rejected change)
    if path == "incremental":
        fix = [("delete", c[1], None, None, None, None) for c in changes if c[0] == "insert"] or \
              [("update", c[1], "c%d" % (c[1] % 3), c[1] * 10, "paid", "k%d" % c[1]) for c in changes]
        r = rerun(cli, d, fix)
        assert r.exit_code == 0, r.output
        assert conn.execute("SELECT count(*) FROM deltapipe.verify('p', 'clean')").fetchone()[0] == 0


def test_custom_audit_from_a_file_and_warn_audits(cli, conn, tmp_path):
    audit_file = ("-- audit: big_paid_orders:\n"
                  "--   paid orders over 150 need a region\n"
                  "SELECT t.* FROM this t LEFT JOIN customers c ON c.name = t.customer\n"
                  " WHERE t.status = 'paid' AND t.amount > 150 AND c.region IS NULL\n"
                  "-- audit[warn]: few_rows: SELECT count(*) AS n FROM this HAVING count(*) < 100\n")
    d = setup(tmp_path, cli, "-- audit[warn]: not_null(code)\n", audit_file=audit_file)
    rid, nodes = last_nodes(conn)
    assert nodes["clean"][0] == "done"
    res = {a: (b, n) for a, b, n in conn.execute(
        "SELECT audit, blocking, failing_rows FROM deltapipe.audit_result WHERE run_id = %s", (rid,)).fetchall()}
    assert res == {"not_null(code)": (False, 0), "big_paid_orders": (True, 0), "few_rows": (False, 1)}
    # a warn audit finding rows: recorded, the change is published
    r = rerun(cli, d, [("insert", 21, "c1", 5, "new", None)])
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT count(*) FROM clean WHERE id = 21").fetchone()[0] == 1
    rid, nodes = last_nodes(conn)
    assert nodes["clean"][0] == "done"
    out = cli("runs", "show", rid).output
    assert "warn   not_null(code) [warn]: 1 offending row" in out
    assert '"id": 21' in out
    # the blocking audit of the file
    r = rerun(cli, d, [("insert", 22, "c9", 500, "paid", "k22")])
    assert r.exit_code == 1 and "big_paid_orders (1 offending row)" in r.output
    assert conn.execute("SELECT count(*) FROM clean WHERE id = 22").fetchone()[0] == 0


def test_downstream_does_not_run_and_runs_show_the_sample(cli, conn, tmp_path):
    extra = {"by_customer": "-- key: customer\nSELECT customer, sum(amount) AS total FROM clean GROUP BY customer\n",
             "other": "SELECT name FROM customers\n"}
    d = setup(tmp_path, cli, "-- audit: amount_positive: SELECT * FROM this WHERE amount < 0\n", extra=extra)
    totals = snapshot(conn, "by_customer")
    (d / "data/customers.csv").write_text(CUSTOMERS + "c3,west\n")
    r = rerun(cli, d, [("update", 2, "c2", -5, "paid", "k2"), ("update", 3, "c0", -7, "new", "k3")])
    assert r.exit_code == 1
    rid, nodes = last_nodes(conn)
    assert nodes["clean"][0] == "failed"
    assert nodes["by_customer"][0] == "skipped" and nodes["by_customer"][3] == "upstream clean failed"
    assert snapshot(conn, "by_customer") == totals
    out = cli("runs", "show", rid).output
    assert "audits:" in out
    assert "FAILED amount_positive: 2 offending rows" in out
    assert '"id": 2' in out and '"amount": -5' in out and '"id": 3' in out
    assert "amount_positive (2 offending rows)" in out  # the node's error


def test_sql_runner_records_audits(cli, conn, tmp_path):
    d = setup(tmp_path, cli, "-- audit: not_null(customer)\n", "full")
    before = snapshot(conn)
    (d / "data/orders.csv").write_text(csv([("insert", 21, None, 5, "new", "k21")]))
    assert cli("load", "orders", d / "data/orders.csv", "--mode", "changes", "--op-column", "op").exit_code == 0
    conn.execute("CALL deltapipe.run_pipeline('p')")
    rid, nodes = last_nodes(conn)
    assert nodes["clean"][:3:2] == ("failed", "DP501")
    assert snapshot(conn) == before
    assert conn.execute("SELECT failing_rows FROM deltapipe.audit_result WHERE run_id = %s", (rid,)).fetchone()[0] == 1


@pytest.mark.parametrize("spec, message", [
    ("-- audit: unique()", "models/clean.sql:2: audit unique() needs a column"),
    ("-- audit: accepted_values(status, new)", "models/clean.sql:2: audit accepted_values(status, new): new is not a literal value"),
    ("-- audit: relationships(customer, customers)", "models/clean.sql:2: audit relationships(customer, customers): customers is not table.column"),
    ("-- audit: nonsense here", "models/clean.sql:2: audit nonsense here: not an audit"),
    ("-- audit: bad: delete from this", "models/clean.sql:2: audit bad: give one SELECT"),
    ("-- audit: r: select * from this join nosuch using (id)", "models/clean.sql:2: unknown table nosuch"),
    ("-- audit: not_null(id, nosuch)", "models/clean.sql:2: audit not_null(id, nosuch): nosuch is not a column of model clean"),
])
def test_bad_audits_are_refused_at_deploy(cli, tmp_path, spec, message):
    d = make_pipeline(tmp_path / "p", {"clean": "-- key: id\n%s\n%s" % (spec, SELECTS["incremental"])}, sources=SOURCES,
                      data={"data/orders.csv": csv(GOOD), "data/customers.csv": CUSTOMERS})
    r = cli("deploy", d)
    assert r.exit_code == 1
    assert r.output.startswith("error: " + message), r.output
    assert r.output.count("\n") == 1


def test_audit_sql_error_fails_the_node_with_its_name(cli, conn, tmp_path):
    d = setup(tmp_path, cli, "")
    before = snapshot(conn)
    (d / "models/clean.sql").write_text("-- key: id\n-- audit: oops: select * from this where nosuch > 0\n"
                                        + SELECTS["incremental"])
    r = rerun(cli, d, [("insert", 21, "c1", 5, "new", "k21")])
    assert r.exit_code == 1
    assert "model clean: audit oops failed to run:" in r.output
    assert snapshot(conn) == before


def test_plan_says_which_models_change_shape(cli, conn, tmp_path):
    extra = {"wide": "SELECT * FROM clean\n", "top": "SELECT count(*) AS n FROM wide\n",
             "aside": "SELECT name FROM customers\n"}
    d = setup(tmp_path, cli, "", extra=extra)
    r = cli("plan", d)
    assert r.exit_code == 0 and "shape changes" not in r.output and "models changing shape" not in r.output
    (d / "models/clean.sql").write_text("-- key: id\nSELECT id, customer, amount::bigint AS amount, code, "
                                        "upper(status) AS label FROM orders\n")
    r = cli("plan", d)
    assert r.exit_code == 0, r.output
    assert "shape changes: amount: numeric -> bigint, +label text, -status (rebuilt and swapped)" in r.output
    assert "affected: upstream clean changes shape" in r.output
    assert "affected: upstream wide changes shape" in r.output
    assert r.output.rstrip().endswith("models changing shape: clean; downstream affected: wide, top")
    r = cli("run", d, "--no-timeline")
    assert r.exit_code == 0, r.output
    assert [c.name for c in conn.execute("SELECT * FROM wide LIMIT 0").description if not c.name.startswith("_dp_")] == \
        ["id", "customer", "amount", "code", "label"]
    r = cli("plan", d)
    assert "shape changes" not in r.output
