"""deltapipe.ingest: record-level changes from applications (ops coalesced per key, rejects, changeset,
rollback, propagate) and `deltapipe ingest NAME FILE`."""

from __future__ import annotations

import json

import psycopg
import pytest

from test_cli import one_error_line

HEAD = "id,name,amount\n"


def ingest(conn, rows, options=None, dataset="t"):
    arg = rows if isinstance(rows, str) else json.dumps(rows)
    return conn.execute("SELECT deltapipe.ingest(%s, %s::jsonb, %s::jsonb)",
                        (dataset, arg, json.dumps(options or {}))).fetchone()[0]


def table(conn, name="t"):
    return conn.execute("SELECT id, name, amount FROM %s ORDER BY id" % name).fetchall()


def checksum_ok(conn, name="t"):
    ds = conn.execute("SELECT checksum, row_count FROM deltapipe.dataset WHERE name = %s", (name,)).fetchone()
    real = conn.execute("SELECT coalesce(sum(_dp_hash::numeric), 0), count(*) FROM %s" % name).fetchone()
    return ds == real


@pytest.fixture
def t(cli, write):
    r = cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric")
    assert r.exit_code == 0, r.output
    r = cli("load", "t", write("a.csv", HEAD + "1,a,1\n2,b,2\n3,c,3\n"))
    assert r.exit_code == 0, r.output


def test_upsert_insert_update_delete(conn, t):
    r = ingest(conn, [{"id": 4, "name": "d", "amount": 4}, {"id": 1, "name": "A", "amount": 10},
                      {"id": 2, "op": "delete"}, {"id": 3, "name": "c", "amount": 3}])
    assert r["received"] == 4 and r["after_coalesce"] == 4
    assert (r["inserted"], r["updated"], r["deleted"], r["unchanged"]) == (1, 1, 1, 1)
    assert r["rejected"] == [] and r["row_count"] == 3
    assert table(conn) == [(1, "A", 10), (3, "c", 3), (4, "d", 4)]
    assert checksum_ok(conn)


# ---------------------------------------------------------------- coalescing
# (ops on one key, in array order) -> (the table row of the key afterwards, net counts I/U/D, after_coalesce)
NEW, OLD = 9, 1   # a key not in the table, a key in it (row (1, 'a', 1))
COALESCE = [
    ("insert+update = insert of the new values", NEW, [("insert", "x", 1), ("update", "y", 2)], (NEW, "y", 2), (1, 0, 0)),
    ("insert+delete = nothing", NEW, [("insert", "x", 1), ("delete",)], None, (0, 0, 0)),
    ("upsert+upsert = insert of the last", NEW, [("upsert", "x", 1), ("upsert", "y", 2)], (NEW, "y", 2), (1, 0, 0)),
    ("insert+update+delete+insert", NEW, [("insert", "x", 1), ("update", "y", 2), ("delete",), ("insert", "z", 3)],
     (NEW, "z", 3), (1, 0, 0)),
    ("update+delete = delete", OLD, [("update", "y", 2), ("delete",)], None, (0, 0, 1)),
    ("update+update = update to the last", OLD, [("update", "y", 2), ("update", "z", 3)], (OLD, "z", 3), (0, 1, 0)),
    ("delete+insert = update", OLD, [("delete",), ("insert", "y", 2)], (OLD, "y", 2), (0, 1, 0)),
    ("delete+insert of the same values = unchanged", OLD, [("delete",), ("insert", "a", 1)], (OLD, "a", 1), (0, 0, 0)),
    ("upsert+delete of an existing key = delete", OLD, [("upsert", "y", 2), ("delete",)], None, (0, 0, 1)),
    ("delete+insert+delete = delete", OLD, [("delete",), ("insert", "y", 2), ("delete",)], None, (0, 0, 1)),
    ("upsert (default op) of an existing key = update", OLD, [(None, "y", 2)], (OLD, "y", 2), (0, 1, 0)),
]


def _row(key, op):
    r = {"id": key}
    if op[0] is not None:
        r["op"] = op[0]
    if len(op) > 1:
        r["name"], r["amount"] = op[1], op[2]
    return r


@pytest.mark.parametrize("why,key,ops,after,counts", COALESCE, ids=[c[0] for c in COALESCE])
def test_ops_on_one_key_coalesce_to_their_net_effect(conn, t, why, key, ops, after, counts):
    before = table(conn)
    r = ingest(conn, [_row(key, op) for op in ops])
    assert r["rejected"] == [], why
    assert (r["inserted"], r["updated"], r["deleted"]) == counts, (why, r)
    assert r["received"] == len(ops)
    # keys whose ops cancel out leave nothing; an update to the same values counts as unchanged
    assert r["after_coalesce"] == sum(counts) + r["unchanged"]
    want = [x for x in before if x[0] != key] + ([after] if after else [])
    assert table(conn) == sorted(want)
    assert checksum_ok(conn)
    # the changeset holds one net change per key, as a load writes it
    cs = conn.execute("SELECT op, key, before, after FROM deltapipe.changeset WHERE run_id = %s", (r["run_id"],)).fetchall()
    assert len(cs) == sum(counts)
    for op, k, b, a in cs:
        assert k == {"id": key}
        assert (b is None) == (op == "I") and (a is None) == (op == "D")
        if a is not None:
            assert a == {"id": key, "name": after[1], "amount": after[2]}


def test_insert_of_an_existing_key_and_update_or_delete_of_a_missing_one_are_rejected(conn, t):
    r = ingest(conn, [{"op": "insert", "id": 1, "name": "x", "amount": 5},     # exists
                      {"op": "update", "id": 7, "name": "y", "amount": 6},     # missing
                      {"op": "delete", "id": 8},                               # missing
                      {"op": "update", "id": 1, "name": "z", "amount": 7},     # still applies
                      {"op": "insert", "id": 8, "name": "w", "amount": 8},
                      {"op": "insert", "id": 8, "name": "v", "amount": 9}])    # exists by now
    rej = {x["position"]: (x["sqlstate"], x["reason"]) for x in r["rejected"]}
    assert rej == {1: ("DP132", "insert of a key that exists"), 2: ("DP133", "update of a key that does not exist"),
                   3: ("DP133", "delete of a key that does not exist"), 6: ("DP132", "insert of a key that exists")}
    assert table(conn) == [(1, "z", 7), (2, "b", 2), (3, "c", 3), (8, "w", 8)]
    # the rejects are in deltapipe.reject with their position and the row as given
    got = conn.execute("SELECT line_no, sqlstate, raw_line::jsonb->>'op' FROM deltapipe.reject WHERE run_id = %s "
                       "ORDER BY line_no", (r["run_id"],)).fetchall()
    assert got == [(1, "DP132", "insert"), (2, "DP133", "update"), (3, "DP133", "delete"), (6, "DP132", "insert")]


def test_lenient_insert_is_an_upsert_and_missing_keys_are_skipped(conn, t):
    r = ingest(conn, [{"op": "insert", "id": 1, "name": "x", "amount": 5}, {"op": "update", "id": 7, "name": "y"},
                      {"op": "delete", "id": 8}], {"strict": False})
    assert r["rejected"] == [] and r["skipped"] == 2 and r["updated"] == 1
    assert table(conn) == [(1, "x", 5), (2, "b", 2), (3, "c", 3)]


# ---------------------------------------------------------------- rejects and values
def test_bad_type_rule_and_null_key_are_rejected_the_rest_applied(cli, conn, t):
    r = cli("dataset", "rule", "add", "t", "positive", "amount > 0")
    assert r.exit_code == 0, r.output
    r = ingest(conn, [{"id": 4, "name": "d", "amount": "abc"},
                      {"id": 5, "name": "e", "amount": -1},
                      {"id": None, "name": "f", "amount": 1},
                      {"name": "g", "amount": 1},
                      {"id": "x7", "name": "h"},
                      {"id": 6, "name": "ok", "amount": 6},
                      {"id": 7, "op": "merge"}])
    rej = {x["position"]: x for x in r["rejected"]}
    assert sorted(rej) == [1, 2, 3, 4, 5, 7]
    assert (rej[1]["column"], rej[1]["sqlstate"]) == ("amount", "22P02")
    assert rej[2]["sqlstate"] == "DP120" and "rule positive failed" in rej[2]["reason"]
    assert (rej[3]["column"], rej[3]["sqlstate"]) == ("id", "DP102")
    assert (rej[4]["column"], rej[4]["sqlstate"]) == ("id", "DP102")
    assert (rej[5]["column"], rej[5]["sqlstate"]) == ("id", "22P02")
    assert rej[7]["sqlstate"] == "DP131" and "merge" in rej[7]["reason"]
    assert r["inserted"] == 1 and table(conn)[-1] == (6, "ok", 6)
    n = conn.execute("SELECT rows_in, rejected, inserted FROM deltapipe.node_run WHERE run_id = %s",
                     (r["run_id"],)).fetchone()
    assert n == (7, 6, 1)


def test_null_values_and_types(cli, conn):
    r = cli("dataset", "create", "v", "--key", "k", "--columns",
            "k text, n integer, d date, ts timestamptz, b boolean, j jsonb, s varchar(3)")
    assert r.exit_code == 0, r.output
    r = ingest(conn, [{"k": "a", "n": 1, "d": "2024-02-29", "ts": "2024-01-01T10:00:00+02:00", "b": True,
                       "j": {"x": [1, 2]}, "s": "abc"},
                      {"k": "b", "n": None, "d": None, "j": None},
                      {"k": "c", "s": "abcd"},
                      {"k": "d", "d": "2023-02-29"},
                      {"k": "e", "n": 1.5}], dataset="v")
    assert r["inserted"] == 2, r
    assert {x["position"]: (x["column"], x["sqlstate"]) for x in r["rejected"]} == {
        3: ("s", "22001"), 4: ("d", "22008"), 5: ("n", "22P02")}
    rows = conn.execute("SELECT k, n, d::text, ts = '2024-01-01 08:00:00+00', b, j, s FROM v ORDER BY k").fetchall()
    assert rows == [("a", 1, "2024-02-29", True, True, {"x": [1, 2]}, "abc"), ("b", None, None, None, None, None, None)]
    # an update to NULL, and back
    ingest(conn, [{"k": "a", "n": None}], dataset="v")
    assert conn.execute("SELECT n, s FROM v WHERE k = 'a'").fetchone() == (None, None)
    assert checksum_ok(conn, "v")


def test_numeric_with_precision_is_checked_without_rounding_into_overflow(cli, conn):
    cli("dataset", "create", "p", "--key", "k", "--columns", "k int, x numeric(4,2)")
    r = ingest(conn, [{"k": 1, "x": 12.34}, {"k": 2, "x": "-9.999"}, {"k": 3, "x": 99.995}, {"k": 4, "x": 123},
                      {"k": 5, "x": "0099.1"}, {"k": 6, "x": 1e1}], dataset="p")
    assert {x["position"]: x["sqlstate"] for x in r["rejected"]} == {3: "22003", 4: "22003"}
    assert conn.execute("SELECT k, x::text FROM p ORDER BY k").fetchall() == [
        (1, "12.34"), (2, "-10.00"), (5, "99.10"), (6, "10.00")]


def test_a_key_given_twice_keeps_the_last(conn, t):
    r = ingest(conn, [{"id": 1, "name": "x", "amount": 1}, {"id": 1, "name": "y", "amount": 2}])
    assert (r["received"], r["after_coalesce"], r["updated"]) == (2, 1, 1)
    assert table(conn)[0] == (1, "y", 2)
    assert conn.execute("SELECT duplicates, after_coalesce FROM deltapipe.node_run WHERE run_id = %s",
                        (r["run_id"],)).fetchone() == (1, 1)


def test_unknown_columns_are_rejected_or_ignored(conn, t):
    r = ingest(conn, [{"id": 5, "name": "e", "colour": "red", "size": 1}, {"id": 6}])
    assert [(x["position"], x["sqlstate"], x["reason"]) for x in r["rejected"]] == [
        (1, "DP130", "unknown column(s) colour, size")]
    assert r["inserted"] == 1
    r = ingest(conn, [{"id": 5, "name": "e", "colour": "red"}], {"unknown_columns": "ignore"})
    assert r["rejected"] == [] and r["inserted"] == 1
    assert table(conn)[-2:] == [(5, "e", None), (6, None, None)]


def test_the_op_key_is_configurable(conn, t):
    r = ingest(conn, [{"id": 1, "action": "delete"}], {"op_key": "action"})
    assert r["deleted"] == 1
    with pytest.raises(psycopg.Error) as e:
        ingest(conn, [], {"op_key": "name"})
    assert e.value.diag.sqlstate == "DP061"


@pytest.mark.parametrize("rows,detail", [
    ('{"id": 1}', "rows is a JSON object"),
    ("42", "rows is a JSON number"),
    ('"x"', "rows is a JSON string"),
    ('[{"id": 1}, 2]', "element 2 (counting from 1) is a JSON number"),
    ('[[{"id": 1}]]', "element 1 (counting from 1) is a JSON array"),
    ("null", "rows is a JSON null"),
])
def test_rows_that_are_not_an_array_of_objects_are_a_clear_error(conn, t, rows, detail):
    with pytest.raises(psycopg.Error) as e:
        ingest(conn, rows)
    assert e.value.diag.sqlstate == "DP060"
    assert "rows must be a JSON array of objects" in e.value.diag.message_primary
    assert e.value.diag.message_detail == detail and e.value.diag.message_hint
    assert table(conn) == [(1, "a", 1), (2, "b", 2), (3, "c", 3)]


def test_bad_options_are_a_clear_error(conn, t):
    for opts in ({"propagte": True}, {"strict": "no"}, {"unknown_columns": "drop"}):
        with pytest.raises(psycopg.Error) as e:
            ingest(conn, [{"id": 1}], opts)
        assert e.value.diag.sqlstate == "DP061"


def test_first_ingest_creates_the_table_and_rollback_drops_it(cli, conn):
    cli("dataset", "create", "n", "--key", "id", "--columns", "id bigint, name text, amount numeric")
    r = ingest(conn, [{"id": 1, "name": "a", "amount": 1}], dataset="n")
    assert r["inserted"] == 1 and table(conn, "n") == [(1, "a", 1)]
    r2 = ingest(conn, [{"id": 2, "name": "b"}], dataset="n")
    assert checksum_ok(conn, "n")
    # the next load of a file compares with what was ingested
    assert cli("rollback", r["run_id"], "--cascade").exit_code == 0
    assert conn.execute("SELECT to_regclass('public.n')").fetchone()[0] is None
    assert r2["run_id"] > r["run_id"]


# ---------------------------------------------------------------- rollback, loads after an ingest
def test_rollback_of_an_ingest_restores_the_table(cli, conn, t):
    before = conn.execute("SELECT id, name, amount, _dp_hash FROM t ORDER BY id").fetchall()
    r = ingest(conn, [{"id": 1, "name": "A"}, {"id": 2, "op": "delete"}, {"id": 9, "name": "z", "amount": 9}])
    assert table(conn) == [(1, "A", None), (3, "c", 3), (9, "z", 9)]
    out = cli("rollback", r["run_id"])
    assert out.exit_code == 0, out.output
    assert conn.execute("SELECT id, name, amount, _dp_hash FROM t ORDER BY id").fetchall() == before
    assert checksum_ok(conn)
    # a load after an ingest sees the ingested rows as the table's
    ingest(conn, [{"id": 4, "name": "d", "amount": 4}])
    out = cli("load", "t", tmp_csv(cli, "1,a,1\n2,b,2\n3,c,3\n4,d,4\n"), "--json")
    assert out.exit_code == 0, out.output
    res = json.loads(out.output)
    assert (res["inserted"], res["updated"], res["deleted"]) == (0, 0, 0)


def tmp_csv(cli, body, _n=[0]):
    import tempfile
    _n[0] += 1
    f = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
    f.write(HEAD + body)
    f.close()
    return f.name


# ---------------------------------------------------------------- the CLI
def test_cli_ingest_from_a_file_and_from_stdin(cli, conn, t, write):
    f = write("rows.ndjson", '{"id": 4, "name": "d", "amount": 4}\n\n{"id": 1, "op": "delete"}\n'
                             '{"id": 5, "amount": "x"}\n')
    r = cli("ingest", "t", f)
    assert r.exit_code == 0, r.output
    assert "received" in r.output and "after coalesce" in r.output
    assert "reject: row 3 (amount): 22P02" in r.output
    assert table(conn) == [(2, "b", 2), (3, "c", 3), (4, "d", 4)]
    r = cli("ingest", "t", "-", "--json", input='{"id": 2, "op": "delete"}\n{"id": 6, "name": "f", "colour": 1}\n')
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["deleted"] == 1 and res["rejected"][0]["sqlstate"] == "DP130"
    r = cli("ingest", "t", "-", "--ignore-unknown-columns", input='{"id": 6, "name": "f", "colour": 1}\n')
    assert r.exit_code == 0 and table(conn)[-1] == (6, "f", None)
    assert "line 2 is not valid JSON" in one_error_line(cli("ingest", "t", "-", input='{"id": 7}\n{"id": \n'))
    assert "DP060" not in one_error_line(cli("ingest", "t", "-", input='[1]\n'))
    assert "unknown dataset" in one_error_line(cli("ingest", "nope", f))


# ---------------------------------------------------------------- downstream models
def _pipeline(cli, tmp_path):
    from pipeline_helpers import make_pipeline
    orders = "".join("%d,c%d,%d,2024-01-0%d\n" % (i, i % 5, i, 1 + i % 3) for i in range(1, 201))
    d = make_pipeline(tmp_path / "p", {
        "big": "SELECT id, customer, amount * 2 AS dbl FROM orders WHERE amount > 3",
        "by_customer": "SELECT customer, count(*) AS n, sum(dbl) AS total, max(dbl) AS hi FROM big GROUP BY customer",
    }, data={"data/orders.csv": "id,customer,amount,day\n" + orders})
    r = cli("run", d, "--no-timeline")
    assert r.exit_code == 0, r.output
    return d


CHANGES = [{"id": 1, "customer": "c9", "amount": 50, "day": "2024-01-05"},          # into the filter, a new group
           {"id": 200, "op": "delete"},                                             # the max of its group
           {"id": 7, "op": "update", "customer": "c2", "amount": 1, "day": "2024-01-01"},  # out of the filter
           {"id": 500, "op": "insert", "customer": "c1", "amount": 9, "day": "2024-01-02"},
           {"id": 500, "op": "update", "customer": "c1", "amount": 10, "day": "2024-01-02"},
           {"id": 501, "op": "insert", "customer": "c1", "amount": 11}, {"id": 501, "op": "delete"}]


def _models_match_recompute(conn):
    assert conn.execute("SELECT model, side, row FROM deltapipe.verify('p')").fetchall() == []
    got = conn.execute("SELECT customer, n, total, hi FROM by_customer ORDER BY 1").fetchall()
    want = conn.execute("SELECT customer, count(*), sum(amount * 2), max(amount * 2) FROM orders WHERE amount > 3 "
                        "GROUP BY customer ORDER BY 1").fetchall()
    assert got == want


def test_models_over_an_ingested_dataset_refresh_incrementally_on_the_next_run(cli, conn, tmp_path):
    _pipeline(cli, tmp_path)
    r = ingest(conn, CHANGES, dataset="orders")
    assert (r["inserted"], r["updated"], r["deleted"], r["after_coalesce"]) == (1, 2, 1, 4), r
    # deferred: the models wait for the next run
    assert conn.execute("SELECT count(*) FROM big WHERE id = 500").fetchone()[0] == 0
    # the ingest logged its changes once: the dataset's capture (of writes outside deltapipe) did not
    assert conn.execute("SELECT count(*) FROM deltapipe.run WHERE kind = 'capture'").fetchone()[0] == 0
    rid = conn.execute("CALL deltapipe.run_pipeline('p')").fetchone()[0]
    st = dict(conn.execute("SELECT node, strategy FROM deltapipe.node_run WHERE run_id = %s", (rid,)).fetchall())
    assert st == {"big": "incremental", "by_customer": "incremental"}, st
    _models_match_recompute(conn)
    # the refresh read the ingest's changes, not the table
    assert conn.execute("SELECT rows_in FROM deltapipe.node_run WHERE run_id = %s AND node = 'big'",
                        (rid,)).fetchone()[0] < 10
    # nothing new: the next run skips both
    rid = conn.execute("CALL deltapipe.run_pipeline('p')").fetchone()[0]
    assert {s for (s,) in conn.execute("SELECT status FROM deltapipe.node_run WHERE run_id = %s", (rid,))} == {"skipped"}


def test_propagate_refreshes_the_downstream_models_in_the_same_transaction(cli, conn, tmp_path, dsn):
    _pipeline(cli, tmp_path)
    r = ingest(conn, CHANGES, {"propagate": True}, dataset="orders")
    [p] = r["propagated"]
    assert p["pipeline"] == "p" and p["status"] == "done"
    assert [(m["node"], m["strategy"], m["incremental"]) for m in p["models"]] == [
        ("big", "incremental", True), ("by_customer", "incremental", True)]
    _models_match_recompute(conn)
    # in the caller's transaction: a rollback takes the ingest and the refresh back together
    before = conn.execute("SELECT * FROM by_customer ORDER BY 1").fetchall()
    with psycopg.connect(dsn) as c2:
        r = ingest(c2, [{"id": 2, "customer": "c7", "amount": 70}], {"propagate": True}, dataset="orders")
        assert c2.execute("SELECT n FROM by_customer WHERE customer = 'c7'").fetchone() == (1,)
        c2.rollback()
    assert conn.execute("SELECT * FROM by_customer ORDER BY 1").fetchall() == before
    # the next ingest and the next run after a propagated one read each change once
    ingest(conn, [{"id": 3, "customer": "c3", "amount": 30}], dataset="orders")
    conn.execute("CALL deltapipe.run_pipeline('p')")
    _models_match_recompute(conn)
    # a dataset no model reads propagates to nothing
    cli("dataset", "create", "lone", "--key", "id", "--columns", "id bigint")
    assert ingest(conn, [{"id": 1}], {"propagate": True}, dataset="lone")["propagated"] == []


def test_cli_ingest_propagate(cli, conn, tmp_path, write):
    _pipeline(cli, tmp_path)
    r = cli("ingest", "orders", write("o.ndjson", '{"id": 1, "customer": "c9", "amount": 50}\n'), "--propagate")
    assert r.exit_code == 0, r.output
    assert "propagated to p" in r.output and "big incremental" in r.output
    _models_match_recompute(conn)


def test_an_ingest_rolled_back_before_the_next_run_never_reaches_the_models(cli, conn, tmp_path):
    _pipeline(cli, tmp_path)
    ingest(conn, [{"id": 2, "customer": "c1", "amount": 20, "day": "2024-01-02"}], dataset="orders")
    r = ingest(conn, CHANGES, dataset="orders")
    assert cli("rollback", r["run_id"]).exit_code == 0
    rid = conn.execute("CALL deltapipe.run_pipeline('p')").fetchone()[0]
    assert conn.execute("SELECT strategy FROM deltapipe.node_run WHERE run_id = %s AND node = 'big'",
                        (rid,)).fetchone()[0] == "incremental"
    _models_match_recompute(conn)
    assert conn.execute("SELECT count(*) FROM big WHERE id = 500").fetchone()[0] == 0


# ---------------------------------------------------------------- metrics
def test_each_ingest_records_its_counts_and_metrics_expose_them(cli, conn, t):
    from test_metrics import parse_prometheus, value
    ingest(conn, [{"id": 4, "name": "d"}, {"id": 4, "name": "e"}, {"id": 1, "op": "delete"}, {"id": "x"}])
    ingest(conn, [{"id": 5, "op": "insert"}, {"id": 5, "op": "delete"}, {"id": 2, "name": "b", "amount": 2}])
    n = conn.execute("SELECT rows_in, after_coalesce, inserted, updated, deleted, unchanged, rejected, duplicates "
                     "FROM deltapipe.node_run WHERE mode = 'ingest' ORDER BY id").fetchall()
    assert n == [(4, 2, 1, 0, 1, 0, 1, 1), (3, 1, 0, 0, 0, 1, 0, 2)]
    r = cli("metrics")
    assert r.exit_code == 0, r.output
    fams = parse_prometheus(r.output)
    assert value(fams, "deltapipe_ingest_calls_total", dataset="t") == 2
    want = {"received": 7, "after_coalesce": 3, "inserted": 1, "updated": 0, "deleted": 1, "unchanged": 1,
            "rejected": 1}
    for outcome, v in want.items():
        assert value(fams, "deltapipe_ingest_rows_total", dataset="t", outcome=outcome) == v, outcome
    # the SQL function says the same
    text = conn.execute("SELECT deltapipe.metrics()").fetchone()[0]
    sql = parse_prometheus(text)
    assert value(sql, "deltapipe_ingest_calls_total", dataset="t") == 2
    for outcome, v in want.items():
        assert value(sql, "deltapipe_ingest_rows_total", dataset="t", outcome=outcome) == v, outcome


# ---------------------------------------------------------------- property: the dataset equals a model of the net effect
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(__import__("os").environ.get("DELTAPIPE_HYPOTHESIS_EXAMPLES", "25"))
ingest_op = st.tuples(st.sampled_from(["insert", "update", "upsert", "delete", None]), st.integers(1, 5),
                      st.sampled_from(["a", "b", "", None]), st.one_of(st.none(), st.integers(-3, 3)))
calls = st.lists(st.tuples(st.lists(ingest_op, max_size=10), st.booleans()), min_size=1, max_size=5)


def apply_model(state: dict, ops, strict: bool):
    """The net effect, one op after the other: the rows of the table by key, and the rejected positions."""
    rejected = []
    for pos, (op, key, name, amount) in enumerate(ops, 1):
        op = op or "upsert"
        exists = key in state
        if (op == "insert" and exists) or (op in ("update", "delete") and not exists):
            if strict:
                rejected.append(pos)
                continue
            if op != "insert":   # lenient: an update or delete of a missing key does nothing,
                continue         # an insert of an existing key is an upsert
        if op == "delete":
            del state[key]
        else:
            state[key] = (name, amount)
    return rejected


def test_random_ingest_calls_keep_the_dataset_equal_to_a_model_of_the_net_effect(conn, t):
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(calls)
    def prop(cs):
        state = {k: (n, a) for k, n, a in table(conn)}
        for ops, strict in cs:
            rows = []
            for op, key, name, amount in ops:
                r = {"id": key, "name": name}
                if amount is not None:
                    r["amount"] = amount
                if op is not None:
                    r["op"] = op
                rows.append(r)
            before = dict(state)
            want_rej = apply_model(state, ops, strict)
            res = ingest(conn, rows, {"strict": strict})
            assert [x["position"] for x in res["rejected"]] == want_rej, (ops, res)
            assert table(conn) == sorted((k, n, a) for k, (n, a) in state.items()), ops
            gone, new = set(before) - set(state), set(state) - set(before)
            changed = {k for k in set(before) & set(state) if before[k] != state[k]}
            assert (res["inserted"], res["updated"], res["deleted"]) == (len(new), len(changed), len(gone)), (ops, res)
        assert checksum_ok(conn)
    prop()
