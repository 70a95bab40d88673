"""Hostile input: names full of quotes, semicolons, spaces, unicode and SQL, and broken
files. Each is refused with one clear line (`error: ...`, exit 1) or handled safely:
the data lands, nothing else is touched (a canary table survives), never a traceback,
never a silently dropped row (rows read = inserted + updated + unchanged + rejected +
duplicates)."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.types.json import Jsonb

from test_cli import one_error_line

CANARY = "canary"
INJECT = [
    "x'; drop table canary; --",
    "a b",
    '"q"',
    "ü",
    "Robert'); DROP TABLE students;--",
    "x; drop table canary",
    "",
    "a.b",
    "x" * 60,
    "canary",  # an existing table: must not be taken over
]


@pytest.fixture
def canary(conn):
    """A table an injection would like to drop, and a catalog snapshot to compare with."""
    conn.execute("CREATE TABLE canary (x int)")
    conn.execute("INSERT INTO canary VALUES (1), (2)")
    conn.execute("CREATE TABLE students (x int)")

    def intact():
        assert conn.execute("SELECT count(*) FROM canary").fetchone()[0] == 2
        assert conn.execute("SELECT to_regclass('public.students') IS NOT NULL").fetchone()[0]
        for t in ("dataset", "run", "node_run", "reject", "staging", "changeset"):
            assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", ("deltapipe." + t,)).fetchone()[0], t
    return intact


def datasets(conn) -> dict:
    return {r[0]: r[1:] for r in conn.execute(
        "SELECT name, target_schema, target_table, row_count, checksum FROM deltapipe.dataset")}


def load_json(cli, *args) -> dict:
    r = cli("load", *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output.strip().splitlines()[-1])


def no_dropped_rows(r: dict) -> None:
    """rows read = inserted + updated + unchanged + rejected + duplicates (+ deleted in changes mode)."""
    total = r["inserted"] + r["updated"] + r["unchanged"] + r["rejected"] + r["duplicates"]
    if r["mode"] == "changes":
        total += r["deleted"]
    assert r["rows_in"] == total, r


def exact(conn, name: str) -> int:
    """The dataset's checksum and row count equal the table's; returns the row count."""
    schema, table, rows, csum = conn.execute(
        "SELECT target_schema, target_table, row_count, checksum FROM deltapipe.dataset WHERE name = %s",
        (name,)).fetchone()
    got = conn.execute(psycopg.sql.SQL("SELECT coalesce(sum(_dp_hash::numeric), 0), count(*) FROM {}.{}").format(
        psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table))).fetchone()
    assert (got[0], got[1]) == (csum, rows), (name, got, csum, rows)
    return rows


# ---------------------------------------------------------------- (a) dataset names

@pytest.mark.parametrize("name", INJECT)
def test_hostile_dataset_names_refused_with_one_line(cli, conn, canary, name):
    before = datasets(conn)
    line = one_error_line(cli("dataset", "create", name, "--key", "id", "--columns", "id bigint"))
    assert "invalid dataset name" in line or "already exists" in line, line
    assert datasets(conn) == before
    # every other command that takes a dataset name: refused as unknown, nothing run
    for args in (["dataset", "show", name], ["dataset", "drop", name, "--drop-table"],
                 ["dataset", "rule", "add", name, "r", "id > 0"], ["dataset", "add-columns", name, "--columns", "x int"],
                 ["dataset", "set", name, "--max-rejects", "1"]):
        assert "unknown dataset" in one_error_line(cli(*args)), args
    canary()


def test_hostile_dataset_name_on_load(cli, conn, canary, write):
    f = write("a.csv", "id\n1\n")
    for name in INJECT:
        assert "unknown dataset" in one_error_line(cli("load", name, f))
    canary()
    assert conn.execute("SELECT count(*) FROM deltapipe.run").fetchone()[0] == 0


def test_dataset_names_at_the_edge_are_accepted_and_load(cli, conn, write):
    f = write("a.csv", "id\n1\n2\n")
    for name in ("_x", "a-b", "A" * 48, "Upper_Case"):
        r = cli("dataset", "create", name, "--key", "id", "--columns", "id bigint")
        assert r.exit_code == 0, r.output
        assert load_json(cli, name, f)["inserted"] == 2
        assert exact(conn, name) == 2
    # the target of 'a-b' and of 'Upper_Case' is a quoted identifier, not something else
    assert conn.execute('SELECT count(*) FROM public."a-b"').fetchone()[0] == 2
    assert conn.execute('SELECT count(*) FROM public."Upper_Case"').fetchone()[0] == 2


# ---------------------------------------------------------------- (b) column names

ODD_COLUMNS = '"we""ird" text, "a;b" int, "select" text, "ü ber" text, id bigint, "DROP TABLE canary" text, "(x)" int'
ODD_HEADER = '"we""ird",a;b,select,ü ber,id,DROP TABLE canary,(x)\n'


def test_odd_column_names_load_and_the_data_lands(cli, conn, canary, write):
    r = cli("dataset", "create", "odd", "--key", "id", "--columns", ODD_COLUMNS)
    assert r.exit_code == 0, r.output
    f = write("odd.csv", ODD_HEADER + 'q,1,s,u,1,d,7\n"x,""y",2,"",,2,,\n')
    r = load_json(cli, "odd", f)
    assert (r["inserted"], r["rejected"]) == (2, 0)
    no_dropped_rows(r)
    rows = conn.execute('SELECT "we""ird", "a;b", "select", "ü ber", id, "DROP TABLE canary", "(x)" FROM odd ORDER BY id'
                        ).fetchall()
    assert rows == [("q", 1, "s", "u", 1, "d", 7), ('x,"y', 2, "", None, 2, None, None)]
    # a change, then the same columns in another order
    f = write("odd2.csv", 'id,(x),DROP TABLE canary,ü ber,select,a;b,"we""ird"\n1,8,d,u,s,1,q\n2,,,,"",3,"x,""y"\n')
    r = load_json(cli, "odd", f, "--mode", "upsert")
    assert (r["updated"], r["inserted"], r["rejected"]) == (2, 0, 0)
    no_dropped_rows(r)
    assert conn.execute('SELECT "(x)" FROM odd WHERE id = 1').fetchone()[0] == 8
    assert exact(conn, "odd") == 2
    canary()


def test_odd_column_names_as_key_op_and_order_columns(cli, conn, canary, write):
    r = cli("dataset", "create", "k", "--key", 'a"b,x;y', "--mode", "changes",
            "--columns", '"a""b" int, "x;y" text, v text, "s""q" int')
    assert r.exit_code == 0, r.output
    f = write("k.csv", '"a""b",x;y,v,o p;x,"s""q"\n1,a,v1,insert,1\n1,a,v2,update,2\n2,b,v,insert,1\n2,b,v,delete,2\n'
                       '3,c,w,upsert,5\n')
    r = load_json(cli, "k", f, "--op-column", "o p;x", "--order-column", 's"q')
    no_dropped_rows(r)
    assert conn.execute('SELECT "a""b", "x;y", v FROM k ORDER BY 1').fetchall() == [(1, "a", "v2"), (3, "c", "w")]
    assert exact(conn, "k") == 2
    # hostile op / order columns are named in one line, nothing loads
    for args, needle in ((["--op-column", "x'); drop table canary; --"], "op column"),
                         (["--op-column", "o p;x", "--order-column", "x'); drop table canary; --"], "order column")):
        line = one_error_line(cli("load", "k", f, "--force", *args))
        assert needle in line or "header" in line, line
    assert exact(conn, "k") == 2
    canary()


def test_header_inferred_odd_column_names(cli, conn, canary, write):
    f = write("h.csv", ODD_HEADER.replace("\n", "\r\n") + 'q,1,s,u,1,d,7\r\n"\\.",2,\\N,"\\.\n\\.",2,,\r\n')
    r = cli("dataset", "create", "h", "--key", "id", "--from", f)
    assert r.exit_code == 0, r.output
    for col in ('we"ird', "a;b", "select", "ü ber", "DROP TABLE canary", "(x)"):
        assert col in r.output
    r = load_json(cli, "h", f)
    assert (r["inserted"], r["rejected"]) == (2, 0)
    # backslashes and a "\." line inside a quoted field arrive as they are; \N is text, not NULL
    assert conn.execute('SELECT "we""ird", "select", "ü ber" FROM h WHERE id = 2').fetchone() == ("\\.", "\\N", "\\.\n\\.")
    assert exact(conn, "h") == 2
    canary()


def test_column_name_with_dollar_quote(cli, conn, canary, write):
    r = cli("dataset", "create", "dq", "--key", "id", "--columns", 'id bigint, "x$body$y" text')
    assert r.exit_code == 0, r.output
    r = load_json(cli, "dq", write("dq.csv", "id,x$body$y\n1,a\n"))
    assert r["inserted"] == 1
    canary()


def test_null_string_with_dollar_quote(cli, conn, canary, write):
    cli("dataset", "create", "dn", "--key", "id", "--columns", "id bigint, v text")
    r = load_json(cli, "dn", write("dn.csv", "id,v\n1,a$body$b\n2,x\n"), "--null", "a$body$b")
    assert r["inserted"] == 2
    assert conn.execute("SELECT v FROM dn ORDER BY id").fetchall() == [(None,), ("x",)]
    canary()


def test_header_column_name_with_comma(cli, conn, write):
    f = write("c.csv", 'id,"x,y"\n1,a\n')
    r = cli("dataset", "create", "c", "--key", "id", "--from", f)
    assert r.exit_code == 0, r.output
    assert load_json(cli, "c", f)["inserted"] == 1
    assert conn.execute('SELECT "x,y" FROM c').fetchone()[0] == "a"


def test_create_from_file_with_byte_order_mark(cli, conn, write):
    f = write("bom.csv", b"\xef\xbb\xbfid,name\r\n1,a\r\n")
    r = cli("dataset", "create", "bom", "--key", "id", "--from", f)
    assert r.exit_code == 0, r.output
    assert load_json(cli, "bom", f)["inserted"] == 1


def test_hostile_column_definitions_refused(cli, conn, canary):
    for cols, needle in (("id bigint); drop table canary; --", "unknown type"),
                         ("id bigint, x text); drop table canary; create table y(z text", "unknown type"),
                         ("id bigint, x int default 1", "unknown type"),
                         ('id bigint, x text collate "C"', "unknown type"),
                         ("id bigint, _dp_hash text", "reserved"),
                         ("id bigint, id text", "twice"),
                         ("id bigint, 'x' text; drop table canary", "unknown type"),
                         ("", "no columns")):
        line = one_error_line(cli("dataset", "create", "cx", "--key", "id", "--columns", cols))
        assert needle in line, (cols, line)
    assert datasets(conn) == {}
    canary()


# ---------------------------------------------------------------- (c) injection through every name

@pytest.mark.parametrize("table", ['public."x; drop table canary"', '"sch""ema"."t;1"', 'public."ü ber"',
                                   '"Robert\'); DROP TABLE students;--"'])
def test_hostile_target_table_names_are_quoted(cli, conn, canary, write, table):
    r = cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, v text", "--table", table)
    assert r.exit_code == 0, r.output
    r = load_json(cli, "t", write("t.csv", "id,v\n1,a\n2,b\n"))
    assert r["inserted"] == 2
    assert exact(conn, "t") == 2
    r = load_json(cli, "t", write("t2.csv", "id,v\n1,a\n3,c\n"))  # snapshot: swap or merge under the odd name
    assert (r["inserted"], r["deleted"], r["unchanged"]) == (1, 1, 1)
    assert exact(conn, "t") == 2
    canary()
    r = cli("dataset", "drop", "t", "--drop-table")
    assert r.exit_code == 0, r.output
    canary()


@pytest.mark.parametrize("table,needle", [
    ("x; drop table canary", "invalid target table name"),
    ("public.canary", "already exists"),
    ("a.b.c", "invalid target table name"),
    ("deltapipe.dataset", "reserved"),
    ("pg_catalog.pg_class", "reserved"),
    ("deltapipe_stage.foo", "reserved"),
    ("pg_catalog.zz", "reserved"),
    ("pg_temp.x", "pg_"),
    ("public.x'; drop table canary; --", "invalid target table name"),
])
def test_hostile_target_table_names_refused(cli, conn, canary, table, needle):
    line = one_error_line(cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint", "--table", table))
    assert needle in line, line
    assert "t" not in datasets(conn)
    canary()


def test_hostile_key_names(cli, conn, canary):
    for key in ("id); drop table canary; --", "x'; drop table canary; --", '"id"'):
        line = one_error_line(cli("dataset", "create", "k", "--key", key, "--columns", "id bigint"))
        assert "not among the columns" in line, line
    canary()


def test_hostile_load_options(cli, conn, canary, write):
    cli("dataset", "create", "o", "--key", "id", "--columns", "id bigint, v text")
    f = write("o.csv", "id,v\n1,a\n2,\n")
    assert load_json(cli, "o", f)["inserted"] == 2
    before = conn.execute("SELECT id, v FROM o ORDER BY id").fetchall()
    refused = [
        (["--delimiter", "ab"], "delimiter"),
        (["--delimiter", ""], "delimiter"),
        (["--quote", ","], "delimiter"),
        (["--quote", "ab"], "delimiter"),
        (["--delimiter", "'"], "header"),
        (["--delimiter", ";"], "header"),
        (["--quote", "'"], None),
        (["--encoding", "utf8'; drop table canary; --"], "encoding"),
        (["--encoding", "nope"], "encoding"),
        (["--max-rejects", "1; drop table canary"], "reject limit"),
        (["--op-column", "x'); drop table canary; --", "--mode", "changes"], "op column"),
        (["--order-column", "x'); drop table canary; --", "--mode", "changes"], None),
    ]
    for args, needle in refused:
        r = cli("load", "o", f, "--force", *args)
        if r.exit_code == 0:  # handled safely: then the data must be the same
            assert conn.execute("SELECT id, v FROM o ORDER BY id").fetchall() == before, args
            assert exact(conn, "o") == 2
            continue
        line = one_error_line(r)
        assert needle is None or needle in line, (args, line)
    # odd but valid options load and keep every row
    for args in (["--null", "'); drop table canary; --"], ["--null", "\\N"], ["--delimiter", "é"],
                 ["--quote", "$"], ["--quote", "'"]):
        g = f
        if args[0] == "--delimiter":
            g = write("o_e.csv", "idév\n1éa\n2é\n")
        r = load_json(cli, "o", g, "--force", *args)
        no_dropped_rows(r)
        assert r["rejected"] == 0, (args, r)
        assert exact(conn, "o") == 2
    canary()


def test_hostile_rule_names_and_predicates(cli, conn, canary, write):
    cli("dataset", "create", "r", "--key", "id", "--columns", "id bigint, amount numeric")
    for rule, pred in (("x'; drop table canary; --", "amount >= 0"),
                       ("a b", "amount >= 0"),
                       ("ok", "amount >= 0; drop table canary"),
                       ("ok", "amount >= 0) FROM canary; DROP TABLE canary; --"),
                       ("ok", "(select count(*) from canary) > 0"),
                       ("ok", "amount IN (WITH d AS (DELETE FROM canary RETURNING x) SELECT x FROM d)"),
                       ("ok", "nosuchcolumn > 0"),
                       ("ok", "")):
        line = one_error_line(cli("dataset", "rule", "add", "r", rule, pred))
        assert "rule" in line, line
    assert "rules" not in conn.execute("SELECT options FROM deltapipe.dataset WHERE name = 'r'").fetchone()[0]
    # a rule with quotes and unicode in its predicate works and rejects with its name
    r = cli("dataset", "rule", "add", "r", "not-drop", "amount::text <> 'drop table canary ü' AND \"amount\" > -100")
    assert r.exit_code == 0, r.output
    r = load_json(cli, "r", write("r.csv", "id,amount\n1,5\n2,-1\n"))
    assert (r["inserted"], r["rejected"]) == (2, 0)
    assert "rule" in one_error_line(cli("dataset", "rule", "drop", "r", "x'; drop table canary; --"))
    canary()


def test_rule_predicate_cannot_have_side_effects(cli, conn, write):
    cli("dataset", "create", "victim", "--key", "id", "--columns", "id bigint")
    cli("load", "victim", write("v.csv", "id\n1\n"))
    cli("dataset", "create", "r", "--key", "id", "--columns", "id bigint")
    r = cli("dataset", "rule", "add", "r", "evil", "deltapipe.drop_dataset('victim', true) IS NULL")
    if r.exit_code == 0:
        cli("load", "r", write("r.csv", "id\n1\n"))
    else:
        one_error_line(r)
    assert conn.execute("SELECT to_regclass('public.victim') IS NOT NULL").fetchone()[0]


def test_sql_api_with_hostile_names(conn, canary):
    bad = "x'); drop table canary; --"
    cases = [
        ("SELECT deltapipe.stage(%s)", (bad,), "DP001"),
        ("SELECT deltapipe.stage(%s)", ("w; drop table canary",), "DP001"),
        ("SELECT deltapipe.create_dataset(%s, ARRAY['id'], 'id bigint')", (bad,), "DP004"),
        ("SELECT deltapipe.create_dataset('c', ARRAY['id'], %s)", ("id bigint); drop table canary; --",), "DP003"),
        ("SELECT deltapipe.create_dataset('c', ARRAY['id'], 'id bigint', %s)", ("public.x'; drop table canary; --",),
         "DP004"),
        ("SELECT deltapipe.create_dataset('c', ARRAY['id'], 'id bigint', 'public.c', %s)", ("snapshot'; drop",), "DP006"),
        ("SELECT deltapipe.create_dataset('c', %s, 'id bigint')", ([bad],), "DP005"),
        ("SELECT deltapipe.create_dataset('c', NULL, 'id bigint')", (), "DP005"),
        ("SELECT deltapipe.create_dataset(NULL, ARRAY['id'], 'id bigint')", (), "DP004"),
        ("SELECT deltapipe.drop_dataset(%s, true)", (bad,), "DP001"),
    ]
    for sql, args, state in cases:
        with pytest.raises(psycopg.Error) as e:
            conn.execute(sql, args)
        assert e.value.diag.sqlstate == state, (sql, e.value.diag.sqlstate, str(e.value))
    conn.execute("SELECT deltapipe.create_dataset('s', ARRAY['id'], 'id bigint, v text')")
    for stg in ("deltapipe_stage.x; drop table canary", "public.canary", "deltapipe.dataset", "canary",
                'deltapipe_stage."s_x""; drop table canary"', "a.b.c", ""):
        with pytest.raises(psycopg.Error) as e:
            conn.execute("CALL deltapipe.load('s', %s, '{}')", (stg,))
        assert e.value.diag.sqlstate == "DP007", (stg, str(e.value))
    canary()


def stage_and_load(conn, dataset: str, lines: list[str], options: dict):
    with conn.transaction():
        stg = conn.execute("SELECT deltapipe.stage(%s)", (dataset,)).fetchone()[0]
        with conn.cursor().copy(psycopg.sql.SQL("COPY {} (_dp_raw) FROM STDIN").format(
                psycopg.sql.SQL(stg))) as cp:
            for line in lines:
                cp.write_row((line,))
        return conn.execute("CALL deltapipe.load(%s, %s, %s)", (dataset, stg, Jsonb(options))).fetchone()[0]


def test_sql_api_load_options_with_hostile_strings(conn, canary):
    conn.execute("SELECT deltapipe.create_dataset('s', ARRAY['id'], 'id bigint, v text')")
    good = ["id,v", "1,a", "2,b"]
    r = stage_and_load(conn, "s", good, {"mode": "upsert"})
    assert r["inserted"] == 2
    evil = "x'); drop table canary; --"
    for opts, state in (({"mode": evil}, "DP006"), ({"format": evil}, "DP006"), ({"delimiter": evil}, "DP006"),
                        ({"quote": evil}, "DP006"), ({"order_column": evil}, "DP006"),
                        ({"mode": "changes", "op_column": evil}, "DP010"), ({"max_rejects": evil}, "DP006"),
                        ({"run_id": "1; drop table canary"}, "22P02"), ({"header": evil}, "22P02"),
                        ({"swap_threshold": evil}, "22P02")):
        with pytest.raises(psycopg.Error) as e:
            stage_and_load(conn, "s", good + ["3,c"], opts)
        assert e.value.diag.sqlstate == state, (opts, e.value.diag.sqlstate, str(e.value))
    # strings that are only data: handled, every row accounted for
    for opts in ({"null": evil}, {"source_file": evil}, {"file_sha256": evil}, {"strategy": evil},
                 {"mode": "upsert", "delimiter": ";", "quote": "'"}):
        lines = good + ["3,c"] if "delimiter" not in opts else ["id;v", "1;a", "3;'c;d'"]
        r = stage_and_load(conn, "s", lines, {"mode": "upsert", **opts})
        assert r["status"] == "done" and r["rejected"] == 0, (opts, r)
    assert conn.execute("SELECT v FROM s WHERE id = 3").fetchone()[0] == "c;d"
    assert conn.execute("SELECT count(*) FROM deltapipe.staging").fetchone()[0] == 0
    canary()


# ---------------------------------------------------------------- (d) hostile files

HEAD = "id,name,n\n"


@pytest.fixture
def loaded(cli, conn, write):
    cli("dataset", "create", "f", "--key", "id", "--columns", "id bigint, name text, n int")
    r = load_json(cli, "f", write("good.csv", HEAD + "1,a,1\n2,b,2\n"))
    assert r["inserted"] == 2
    return conn.execute("SELECT * FROM f ORDER BY id").fetchall()


@pytest.mark.parametrize("name,content,needle", [
    ("invalid utf-8 in header", b"id,n\xe9me,n\n1,a,1\n", "UTF8"),
    ("duplicate header", "id,name,id\n1,a,1\n", "repeats"),
    ("duplicate header, all columns", "id,name,n,name\n1,a,1,a\n", "repeats"),
    ("empty file", b"", "empty"),
    ("blank lines only", "\n\n\n", "empty"),
    ("header only, snapshot", HEAD, "no valid rows"),
    ("wrong delimiter", "id;name;n\n1;a;1\n", "delimiter"),
    ("tab delimited as csv", "id\tname\tn\n1\ta\t1\n", "delimiter"),
    ("only bad rows, snapshot", HEAD + "x,a,1\n", "no valid rows"),
])
def test_hostile_files_one_line_and_target_unchanged(cli, conn, write, loaded, name, content, needle):
    f = write("bad.csv", content)
    line = one_error_line(cli("load", "f", f, "--force"))
    assert needle in line, (name, line)
    assert conn.execute("SELECT * FROM f ORDER BY id").fetchall() == loaded
    assert exact(conn, "f") == 2
    assert conn.execute("SELECT count(*) FROM deltapipe.staging").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'deltapipe_stage'").fetchone()[0] == 0
    # a run it started (an empty file is refused before) is recorded as failed, with the error
    for st, err in conn.execute("SELECT status, error FROM deltapipe.run WHERE args->>'file' = %s", (str(f),)):
        assert st == "failed" and err


@pytest.mark.parametrize("name,content,state", [
    ("invalid utf-8", HEAD.encode() + b"1,a,1\n3,caf\xe9,3\n", "22021"),
    ("nul byte", HEAD.encode() + b"1,a,1\n3,b\x00c,3\n", "22021"),
    ("unterminated quote", HEAD + '1,a,1\n3,"open,3\n', "DP103"),
    ("unterminated quote mid-file", HEAD + '1,a,1\n3,"open,3\n4,d,4\n', "DP103"),  # as COPY: to the end
])
def test_hostile_bytes_reject_their_record_only(cli, conn, write, loaded, name, content, state):
    r = load_json(cli, "f", write("bad.csv", content), "--mode", "upsert")
    no_dropped_rows(r)
    assert (r["rows_in"], r["unchanged"], r["rejected"]) == (2, 1, 1), r
    assert conn.execute("SELECT line_no, sqlstate FROM deltapipe.reject WHERE run_id = %s",
                        (r["run_id"],)).fetchall() == [(3, state)]
    assert conn.execute("SELECT * FROM f ORDER BY id").fetchall() == loaded


def test_mixed_bad_rows_land_good_rows_and_reject_the_rest(cli, conn, write, loaded):
    f = write("mixed.csv", HEAD + "1,a,1\n2,b\n3,c,3,4\n,d,4\n5,e,x\n6,\"f,\"\"g\",6\n7,\"h\"x,7\n"
              "8,i,99999999999\n1,dup,1\n9,j,9")  # no newline at the end
    r = load_json(cli, "f", f, "--mode", "upsert")
    no_dropped_rows(r)
    assert r["rows_in"] == 10
    # 7,"h"x,7 is read as COPY reads it: name hx
    assert (r["inserted"], r["updated"], r["rejected"], r["duplicates"]) == (3, 1, 5, 1), r
    rej = conn.execute("SELECT line_no, sqlstate FROM deltapipe.reject WHERE run_id = %s ORDER BY line_no",
                       (r["run_id"],)).fetchall()
    assert [l for l, _ in rej] == [3, 4, 5, 6, 9]
    assert dict(rej)[5] == "DP102" and dict(rej)[3] == "DP101"
    assert conn.execute("SELECT name FROM f WHERE id = 6").fetchone()[0] == 'f,"g'
    assert conn.execute("SELECT name FROM f WHERE id = 1").fetchone()[0] == "dup"
    assert conn.execute("SELECT name FROM f WHERE id = 7").fetchone()[0] == "hx"
    assert exact(conn, "f") == 5


def test_header_only_file_first_load_and_allow_empty(cli, conn, write):
    cli("dataset", "create", "e", "--key", "id", "--columns", "id bigint")
    f = write("h.csv", "id\n")
    r = load_json(cli, "e", f)
    assert r["rows_in"] == 0 and r["inserted"] == 0
    cli("load", "e", write("one.csv", "id\n1\n"))
    one_error_line(cli("load", "e", f, "--force"))
    assert exact(conn, "e") == 1
    r = load_json(cli, "e", f, "--force", "--allow-empty")
    assert r["deleted"] == 1 and exact(conn, "e") == 0


def test_twenty_megabyte_field(cli, conn, write, loaded):
    big = "x" * (20 << 20)
    f = write("big.csv", HEAD + "1,a,1\n3,%s,3\n4,\"%s\",4\n" % (big, big[:1000] + '""' + big[:1000]))
    r = load_json(cli, "f", f, "--mode", "upsert")
    no_dropped_rows(r)
    assert (r["inserted"], r["unchanged"], r["rejected"]) == (2, 1, 0), r
    assert conn.execute("SELECT length(name) FROM f WHERE id = 3").fetchone()[0] == 20 << 20
    assert conn.execute("SELECT length(name) FROM f WHERE id = 4").fetchone()[0] == 2001
    assert exact(conn, "f") == 4


def test_ndjson_hostile_lines(cli, conn, write):
    cli("dataset", "create", "j", "--key", "id", "--columns", 'id bigint, "a;b" text')
    f = write("j.ndjson", '{"id": 1, "a;b": "x\'); drop table canary; --"}\n[1,2]\nnot json\n{"id": null}\n'
                          '{"id": 2, "a;b": "\\u00fc\\n"}\n"str"\n')
    r = load_json(cli, "j", f)
    no_dropped_rows(r)
    assert (r["rows_in"], r["inserted"], r["rejected"]) == (6, 2, 4), r
    assert conn.execute('SELECT "a;b" FROM j ORDER BY id').fetchall() == [("x'); drop table canary; --",), ("ü\n",)]
