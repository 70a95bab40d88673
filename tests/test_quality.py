"""Data quality before publish: rules, reject limits, schema changes (through the CLI)."""

from __future__ import annotations

from test_cli import one_error_line

HEAD = "id,name,amount\n"


def setup(cli, write):
    r = cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric")
    assert r.exit_code == 0, r.output
    r = cli("load", "t", write("a.csv", HEAD + "1,a,1\n2,b,2\n"))
    assert r.exit_code == 0, r.output


def test_rules_reject_rows_with_their_name(cli, conn, write):
    setup(cli, write)
    assert cli("dataset", "rule", "add", "t", "positive", "amount >= 0").exit_code == 0
    assert cli("dataset", "rule", "add", "t", "named", "name <> ''").exit_code == 0
    r = cli("dataset", "rule", "list", "t")
    assert "positive" in r.output and "amount >= 0" in r.output
    r = cli("load", "t", write("b.csv", HEAD + "1,a,1\n2,b,-5\n3,c,\n4,,4\n"), "--mode", "upsert")
    assert r.exit_code == 0, r.output
    rj = conn.execute("SELECT line_no, sqlstate, message, raw_line FROM deltapipe.reject ORDER BY line_no").fetchall()
    assert [(x[0], x[1]) for x in rj] == [(3, "DP120")]  # NULL amount passes; line 5 has name NULL (unquoted empty)
    assert "positive" in rj[0][2] and rj[0][3] == "2,b,-5"
    assert conn.execute("SELECT id, amount FROM t ORDER BY id").fetchall() == [(1, 1), (2, 2), (3, None), (4, 4)]
    assert cli("dataset", "rule", "drop", "t", "positive").exit_code == 0
    assert "positive" not in cli("dataset", "rule", "list", "t").output


def test_rules_are_checked_when_declared(cli, write):
    setup(cli, write)
    assert "nosuch" in one_error_line(cli("dataset", "rule", "add", "t", "r1", "nosuch > 0"))
    assert "syntax error" in one_error_line(cli("dataset", "rule", "add", "t", "r2", "amount >= AND 0"))
    assert "not a row expression" in one_error_line(cli("dataset", "rule", "add", "t", "r3", "true; drop table t"))
    assert "not a row expression" in one_error_line(
        cli("dataset", "rule", "add", "t", "r4", "(select count(*) from t) > 0"))
    assert "unknown dataset" in one_error_line(cli("dataset", "rule", "add", "nope", "r5", "true"))


def test_a_rule_added_later_applies_to_unchanged_lines(cli, conn, write):
    """Unchanged lines are normally not parsed again; a new rule changes the row hash seed."""
    setup(cli, write)
    cli("dataset", "rule", "add", "t", "small", "amount < 2")
    r = cli("load", "t", write("a2.csv", HEAD + "1,a,1\n2,b,2\n"), "--mode", "upsert")
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT line_no FROM deltapipe.reject").fetchall() == [(3,)]


def test_reject_limit_publishes_nothing_and_says_why(cli, conn, write):
    setup(cli, write)
    before = conn.execute("SELECT * FROM t ORDER BY id").fetchall()
    bad = write("c.csv", HEAD + "1,a,x\n2,b,y\n3,c,3\n5,e\n")
    line = one_error_line(cli("load", "t", bad, "--max-rejects", "2"))
    assert "3 of 4 rows rejected" in line and "nothing was published" in line
    assert "2 x amount 22P02" in line and "lines 2, 3" in line and "DP101" not in line or "expected 3 fields" in line
    assert conn.execute("SELECT * FROM t ORDER BY id").fetchall() == before
    assert conn.execute("SELECT status, sqlstate FROM deltapipe.run ORDER BY id DESC LIMIT 1").fetchone() == ("failed", "DP021")
    # as a share, and as the dataset's default
    assert "rejected" in one_error_line(cli("load", "t", bad, "--max-rejects", "50%"))
    assert cli("dataset", "set", "t", "--max-rejects", "1").exit_code == 0
    assert "limit of 1" in one_error_line(cli("load", "t", bad))
    r = cli("load", "t", bad, "--max-rejects", "75%")
    assert r.exit_code == 0, r.output
    assert "invalid reject limit" in one_error_line(cli("load", "t", bad, "--max-rejects", "lots"))


def test_schema_change_is_named_or_added(cli, conn, write):
    setup(cli, write)
    extra = write("e.csv", "id,name,amount,email\n1,a,1,a@x.org\n2,b,2,\n")
    line = one_error_line(cli("load", "t", extra))
    assert "not in the dataset email" in line and "add-columns" in line
    renamed = write("r.csv", "id,fullname,amount\n1,a,1\n")
    line = one_error_line(cli("load", "t", renamed))
    assert "missing name" in line and "not in the dataset fullname" in line
    r = cli("load", "t", extra, "--on-schema-change", "add-columns")
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT id, email FROM t ORDER BY id").fetchall() == [(1, "a@x.org"), (2, None)]
    cols = conn.execute("SELECT columns FROM deltapipe.dataset WHERE name = 't'").fetchone()[0]
    assert cols[-1] == {"name": "email", "type": "text"}
    line = one_error_line(cli("dataset", "add-columns", "t", "--columns", "amount text"))
    assert "amount" in line and "numeric" in line and "not supported" in line
