"""Rollback of a run: exact restore (content and checksum), refusal, cascade."""

from __future__ import annotations

from test_cli import one_error_line

HEAD = "id,name,amount\n"


def state(conn):
    rows = conn.execute("SELECT id, name, amount, _dp_hash FROM t ORDER BY id").fetchall()
    ds = conn.execute("SELECT checksum, row_count FROM deltapipe.dataset WHERE name = 't'").fetchone()
    return rows, ds


def last_run(conn):
    return conn.execute("SELECT max(id) FROM deltapipe.run").fetchone()[0]


def test_rollback_restores_exactly_and_refuses_out_of_order(cli, conn, write):
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric")
    r = cli("load", "t", write("a.csv", HEAD + "1,a,1\n2,b,2\n3,c,3\n"))
    assert r.exit_code == 0, r.output
    first = last_run(conn)
    s1 = state(conn)
    r = cli("load", "t", write("b.csv", HEAD + "1,a,1\n2,B,20\n4,d,4\n"), "--strategy", "merge")
    assert r.exit_code == 0, r.output
    second = last_run(conn)
    s2 = state(conn)
    r = cli("load", "t", write("c.csv", HEAD + "1,a,100\n2,B,20\n4,d,4\n5,e,5\n"), "--strategy", "merge")
    third = last_run(conn)
    # a later run changed the table: refuse, naming it
    line = one_error_line(cli("rollback", second))
    assert "run %s changed t" % third in line and "--cascade" in line
    r = cli("rollback", third)
    assert r.exit_code == 0, r.output
    assert state(conn) == s2
    r = cli("rollback", second)
    assert r.exit_code == 0 and "rows restored" in r.output, r.output
    assert state(conn) == s1
    assert "already rolled back" in one_error_line(cli("rollback", second))
    # the same file can be loaded again after a rollback
    r = cli("load", "t", write("b2.csv", HEAD + "1,a,1\n2,B,20\n4,d,4\n"))
    assert r.exit_code == 0 and "skipped" not in r.output
    assert state(conn) == s2 or state(conn)[0][:2] == s2[0][:2]
    # cascade from the first run drops the table the first load created
    r = cli("rollback", first, "--cascade")
    assert r.exit_code == 0, r.output
    assert "dropped" in r.output
    assert conn.execute("SELECT to_regclass('public.t')").fetchone()[0] is None
    assert conn.execute("SELECT checksum, row_count FROM deltapipe.dataset WHERE name = 't'").fetchone() == (0, 0)


def test_rollback_from_sql_and_unknown_run(cli, conn, write):
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric")
    cli("load", "t", write("a.csv", HEAD + "1,a,1\n"))
    s1 = state(conn)
    cli("load", "t", write("b.csv", HEAD + "1,x,1\n2,y,2\n"), "--strategy", "swap")
    conn.execute("CALL deltapipe.rollback(%s)", (last_run(conn),))
    assert state(conn) == s1
    assert "unknown run" in one_error_line(cli("rollback", 99999))
