"""History mode (SCD2): every version of each row kept in <table>_history with valid_from / valid_to,
built from the same diff as a snapshot load; changeset, rollback, concurrent loads, models over it."""

from __future__ import annotations

import threading

import psycopg
import pytest

from pipeline_helpers import make_pipeline
from test_cli import one_error_line

HEAD = "id,name,amount\n"


def history(conn, table="t_history", vf="valid_from", vt="valid_to"):
    """Every version as (id, name, amount, opened-at load #, closed-at load # or None), loads numbered 1..n
    in valid_at order, so the test compares versions without absolute times."""
    times = [r[0] for r in conn.execute("SELECT DISTINCT valid_at FROM deltapipe.node_run WHERE valid_at IS NOT NULL "
                                         "ORDER BY 1").fetchall()]
    rows = conn.execute("SELECT id, name, amount, %s, %s FROM %s ORDER BY id, %s" % (vf, vt, table, vf)).fetchall()
    return [(i, n, a, times.index(f) + 1, None if t is None else times.index(t) + 1) for i, n, a, f, t in rows]


def current(conn):
    return conn.execute("SELECT id, name, amount FROM t ORDER BY id").fetchall()


def current_versions(conn, table="t_history", vt="valid_to"):
    return conn.execute("SELECT id, name, amount FROM %s WHERE %s IS NULL ORDER BY id" % (table, vt)).fetchall()


def last_run(conn):
    return conn.execute("SELECT max(id) FROM deltapipe.run").fetchone()[0]


def test_updates_deletes_reinserts_and_unchanged_reloads(cli, conn, write):
    r = cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric", "--mode", "history")
    assert r.exit_code == 0 and "mode history" in r.output, r.output
    r = cli("load", "t", write("1.csv", HEAD + "1,a,1\n2,b,2\n3,c,3\n"))
    assert r.exit_code == 0 and "history mode" in r.output and "opened 3, closed 0" in r.output, r.output
    assert history(conn) == [(1, "a", 1, 1, None), (2, "b", 2, 1, None), (3, "c", 3, 1, None)]
    # the dataset's table holds the current rows only, with no validity columns
    assert current(conn) == [(1, "a", 1), (2, "b", 2), (3, "c", 3)]
    assert [c for c, in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 "
                                     "AND NOT attisdropped ORDER BY attnum")] == ["id", "name", "amount", "_dp_hash"]
    # an update closes the current version and opens a new one; a missing key is closed (soft delete)
    r = cli("load", "t", write("2.csv", HEAD + "1,a,1\n2,B,20\n"))
    assert r.exit_code == 0 and "opened 1, closed 2" in r.output, r.output
    assert history(conn) == [(1, "a", 1, 1, None), (2, "b", 2, 1, 2), (2, "B", 20, 2, None), (3, "c", 3, 1, 2)]
    assert current(conn) == [(1, "a", 1), (2, "B", 20)] == current_versions(conn)
    # the same rows, in another order and spelled differently (same values): nothing is written
    before = conn.execute("SELECT xmin::text, * FROM t_history ORDER BY id, valid_from").fetchall()
    r = cli("load", "t", write("3.csv", HEAD + "2,\"B\",20\n1,a,1\n"))
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT xmin::text, * FROM t_history ORDER BY id, valid_from").fetchall() == before
    assert conn.execute("SELECT inserted + updated + deleted FROM deltapipe.node_run ORDER BY id DESC LIMIT 1").fetchone()[0] == 0
    # an identical file is skipped altogether
    r = cli("load", "t", write("4.csv", HEAD + "2,\"B\",20\n1,a,1\n"))
    assert "skipped" in r.output, r.output
    # a deleted key comes back: a new version, the closed one stays closed
    r = cli("load", "t", write("5.csv", HEAD + "1,a,1\n2,B,20\n3,c,3\n"))
    assert r.exit_code == 0, r.output
    assert history(conn) == [(1, "a", 1, 1, None), (2, "b", 2, 1, 2), (2, "B", 20, 2, None),
                             (3, "c", 3, 1, 2), (3, "c", 3, 4, None)]
    assert current(conn) == current_versions(conn)
    # valid_to IS NULL is the current version; every version is later than the one before
    assert conn.execute("SELECT count(*) FROM t_history WHERE valid_to <= valid_from").fetchone()[0] == 0
    # the changeset: a changed row is -old +new of the current rows
    rid = last_run(conn)
    assert conn.execute("SELECT op, key, before, after FROM deltapipe.changeset WHERE run_id = %s", (rid,)).fetchall() == [
        ("I", {"id": 3}, None, {"id": 3, "name": "c", "amount": 3})]
    # dataset show names the history table
    r = cli("dataset", "show", "t")
    assert "history   public.t_history (valid_from, valid_to)" in r.output, r.output


def test_no_duplicate_current_versions_by_construction(cli, conn, write):
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric", "--mode", "history")
    cli("load", "t", write("1.csv", HEAD + "1,a,1\n"))
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO t_history (id, name, amount, valid_from) VALUES (1, 'x', 0, now() + interval '1 day')")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE t_history SET valid_to = valid_from - interval '1 second'")
    # a version removed by hand: the next load says the history is out of step, and publishes nothing
    conn.execute("DELETE FROM t_history")
    line = one_error_line(cli("load", "t", write("2.csv", HEAD + "1,z,1\n")))
    assert "out of step" in line, line
    assert current(conn) == [(1, "a", 1)]


def test_rollback_restores_the_exact_versions(cli, conn, write):
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric", "--mode", "history")
    cli("load", "t", write("1.csv", HEAD + "1,a,1\n2,b,2\n3,c,3\n"))
    first = last_run(conn)
    h1, c1 = history(conn), current(conn)
    for i, body in enumerate(["1,a,1\n2,B,20\n4,d,4\n", "2,B,20\n3,c,30\n4,d,4\n5,e,5\n"]):
        r = cli("load", "t", write("%d.csv" % (i + 2), HEAD + body), "--strategy", ["merge", "swap"][i])
        assert r.exit_code == 0, r.output
        if i == 0:
            second = last_run(conn)
            h2, c2 = history(conn), current(conn)
    third = last_run(conn)
    assert history(conn) == [(1, "a", 1, 1, 3), (2, "b", 2, 1, 2), (2, "B", 20, 2, None), (3, "c", 3, 1, 2),
                             (3, "c", 30, 3, None), (4, "d", 4, 2, None), (5, "e", 5, 3, None)]
    exact = "SELECT * FROM t_history ORDER BY id, valid_from"
    r = cli("rollback", third)
    assert r.exit_code == 0, r.output
    assert (history(conn), current(conn)) == (h2, c2)
    r = cli("rollback", second)
    assert r.exit_code == 0, r.output
    assert (history(conn), current(conn)) == (h1, c1)
    # reloaded: new versions at a later time than the rolled-back ones
    snap = conn.execute(exact).fetchall()
    cli("load", "t", write("6.csv", HEAD + "1,a,1\n2,x,2\n3,c,3\n"))
    assert [(v[0], v[1], v[4]) for v in history(conn)] == [(1, "a", None), (2, "b", 4), (2, "x", None), (3, "c", None)]
    conn.execute("CALL deltapipe.rollback(%s)", (last_run(conn),))
    assert conn.execute(exact).fetchall() == snap
    # the first load created both tables: rolling it back drops both, and loading again starts anew
    r = cli("rollback", first)
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT to_regclass('public.t'), to_regclass('public.t_history')").fetchone() == (None, None)
    cli("load", "t", write("7.csv", HEAD + "9,z,9\n"))
    assert current_versions(conn) == [(9, "z", 9)]


def test_history_begins_on_an_existing_dataset_and_survives_other_modes(cli, conn, write):
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric")
    cli("load", "t", write("1.csv", HEAD + "1,a,1\n2,b,2\n"))
    r = cli("load", "t", write("2.csv", HEAD + "1,a,1\n2,b,3\n3,c,3\n"), "--mode", "history")
    assert r.exit_code == 0, r.output
    hist_run = last_run(conn)
    # the versions start with this load: the rows as it left them
    assert history(conn) == [(1, "a", 1, 1, None), (2, "b", 3, 1, None), (3, "c", 3, 1, None)]
    # once kept, every load keeps it, in any mode
    r = cli("load", "t", write("3.csv", HEAD + "3,C,3\n"), "--mode", "upsert")
    assert r.exit_code == 0, r.output
    assert history(conn)[2:] == [(3, "c", 3, 1, 2), (3, "C", 3, 2, None)]
    assert current(conn) == current_versions(conn)
    # a delete of changes mode closes the version; an upsert does not close the keys it does not name
    r = cli("load", "t", write("3b.csv", "op,id,name,amount\ndelete,3,,\nupsert,1,A,1\n"), "--mode", "changes")
    assert r.exit_code == 0, r.output
    assert history(conn) == [(1, "a", 1, 1, 3), (1, "A", 1, 3, None), (2, "b", 3, 1, None),
                             (3, "c", 3, 1, 2), (3, "C", 3, 2, 3)]
    assert current(conn) == current_versions(conn)
    # rolling back the load that began the history removes it
    r = cli("rollback", hist_run, "--cascade")
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT to_regclass('public.t_history')").fetchone()[0] is None
    assert current(conn) == [(1, "a", 1), (2, "b", 2)]
    cli("load", "t", write("4.csv", HEAD + "1,a,1\n"))
    assert conn.execute("SELECT to_regclass('public.t_history')").fetchone()[0] is None


def test_names_are_configurable_and_checked(cli, conn, write):
    r = cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric", "--mode",
            "history", "--history-table", "hist.t_versions", "--valid-from-column", "since",
            "--valid-to-column", "until")
    assert r.exit_code == 0, r.output
    cli("load", "t", write("1.csv", HEAD + "1,a,1\n"))
    cli("load", "t", write("2.csv", HEAD + "1,b,1\n"))
    assert history(conn, "hist.t_versions", "since", "until") == [(1, "a", 1, 1, 2), (1, "b", 1, 2, None)]
    # fixed once the history exists
    line = one_error_line(cli("dataset", "set", "t", "--valid-to-column", "other"))
    assert "already keeps its history in hist.t_versions" in line, line
    # a name that is a column, or reserved
    cli("dataset", "create", "u", "--key", "id", "--columns", "id bigint, valid_from date", "--mode", "history")
    assert "invalid valid_to_column" in one_error_line(cli("dataset", "set", "u", "--valid-to-column", "id"))
    assert "invalid valid_from_column" in one_error_line(cli("dataset", "set", "u", "--valid-from-column", "_dp_x"))
    line = one_error_line(cli("load", "u", write("u.csv", "id,valid_from\n1,2024-01-01\n")))
    assert "has a column named valid_from" in line, line
    assert "cannot be the history table" in one_error_line(cli("dataset", "set", "u", "--history-table", "public.t"))
    r = cli("dataset", "set", "u", "--valid-from-column", "seen_from")
    assert r.exit_code == 0, r.output
    r = cli("load", "u", write("u.csv", "id,valid_from\n1,2024-01-01\n"))
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT id, valid_from, valid_to FROM u_history").fetchall()[0][:2] == (1, __import__("datetime").date(2024, 1, 1))
    # a new column reaches the history table too (NULL in the older versions)
    cli("dataset", "add-columns", "t", "--columns", "note text")
    cli("load", "t", write("3.csv", "id,name,amount,note\n1,b,1,hi\n"))
    assert conn.execute("SELECT name, note FROM hist.t_versions ORDER BY since").fetchall() == [
        ("a", None), ("b", None), ("b", "hi")]
    # dropping the dataset with its table drops the history table too
    cli("dataset", "drop", "t", "--drop-table")
    assert conn.execute("SELECT to_regclass('hist.t_versions')").fetchone()[0] is None


def test_sql_api(conn):
    conn.execute("SELECT deltapipe.create_dataset('s', ARRAY['id'], 'id bigint, v text', 'public.s', 'history')")
    assert conn.execute("SELECT deltapipe.set_dataset_option('s', 'valid_to_column', 'ended')").fetchone()[0] == {
        "valid_to_column": "ended"}

    def load(lines, opts='{}'):
        stg = conn.execute("SELECT deltapipe.stage('s')").fetchone()[0]
        with conn.cursor().copy("COPY %s (_dp_raw) FROM STDIN" % stg) as cp:
            for line in ["id,v"] + lines:
                cp.write_row((line,))
        return conn.execute("CALL deltapipe.load('s', %s, %s, NULL)", (stg, opts)).fetchone()[0]

    r = load(["1,a", "2,b"], '{"valid_at": "2024-01-01T00:00:00Z"}')
    assert r["mode"] == "history" and r["inserted"] == 2
    r = load(["1,a", "2,c"], '{"valid_at": "2024-02-01T00:00:00Z"}')
    assert r["updated"] == 1
    r = load(["2,c"], '{"valid_at": "2024-03-01T00:00:00Z"}')
    assert r["deleted"] == 1
    rows = conn.execute("SELECT id, v, valid_from::date::text, ended::date::text FROM s_history ORDER BY id, valid_from").fetchall()
    assert rows == [(1, "a", "2024-01-01", "2024-03-01"), (2, "b", "2024-01-01", "2024-02-01"),
                    (2, "c", "2024-02-01", None)]
    # the table as it was on a day: versions valid then
    assert conn.execute("SELECT id, v FROM s_history WHERE valid_from <= '2024-01-15' AND "
                        "(ended IS NULL OR ended > '2024-01-15') ORDER BY id").fetchall() == [(1, "a"), (2, "b")]
    # versions go forward in time only
    with pytest.raises(psycopg.Error) as e:
        load(["2,d"], '{"valid_at": "2024-02-15T00:00:00Z"}')
    assert e.value.diag.sqlstate == "DP026"
    with pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT deltapipe.create_dataset('x', ARRAY['id'], 'id bigint', NULL, 'scd2')")
    assert e.value.diag.sqlstate == "DP006"
    # a history dataset's options cannot change any more
    with pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT deltapipe.set_dataset_option('s', 'history_table', 'elsewhere')")
    assert e.value.diag.sqlstate == "DP026"


def test_concurrent_loads_never_leave_two_current_versions(cli, conn, dsn, write):
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric", "--mode", "history")
    n = 2000
    cli("load", "t", write("0.csv", HEAD + "".join("%d,v0,%d\n" % (i, i) for i in range(n))))
    files = [write("a.csv", HEAD + "".join("%d,a,%d\n" % (i, i) for i in range(0, n, 2))),
             write("b.csv", HEAD + "".join("%d,b,%d\n" % (i, i) for i in range(n // 2, n + n // 2)))]
    from deltapipe.load.loader import LoadOptions, load_file
    errors: list = []
    barrier = threading.Barrier(2)

    def worker(path):
        try:
            barrier.wait()
            load_file(dsn, "t", path, LoadOptions(force=True), progress=False)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    for _round in range(2):
        ths = [threading.Thread(target=worker, args=(f,)) for f in files]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        assert errors == []
        # one current version per key, equal to the table; no overlapping versions of a key
        assert current(conn) == current_versions(conn)
        assert conn.execute("SELECT count(*) FROM (SELECT id FROM t_history WHERE valid_to IS NULL GROUP BY id "
                            "HAVING count(*) > 1) d").fetchone()[0] == 0
        assert conn.execute("""SELECT count(*) FROM t_history a JOIN t_history b ON a.id = b.id AND a.valid_from < b.valid_from
                               AND (a.valid_to IS NULL OR a.valid_to > b.valid_from)""").fetchone()[0] == 0
        # the later load wins, as a whole
        assert {r[0] for r in conn.execute("SELECT DISTINCT name FROM t")} in ({"a"}, {"b"})


MODEL_SOURCES = ('[[sources]]\ndataset = "people"\nfile = "data/people.csv"\nkey = "id"\nmode = "history"\n'
                 'columns = "id bigint, city text, score int"\nhistory_table = "people_versions"\n'
                 'valid_from_column = "since"\n')
MODELS = {
    "by_city": "SELECT city, count(*) AS n, sum(score) AS total FROM people GROUP BY city",
    "versions": "-- key: id, since\nSELECT id, city, since, valid_to FROM people_versions",
}


def test_a_model_over_a_history_dataset_sees_the_current_rows_incrementally(cli, conn, tmp_path):
    def people(rows):
        return "id,city,score\n" + "".join("%d,%s,%d\n" % r for r in rows)

    rows = [(i, "c%d" % (i % 5), i) for i in range(1, 201)]
    d = make_pipeline(tmp_path / "p", MODELS, sources=MODEL_SOURCES, data={"data/people.csv": people(rows)})
    r = cli("run", d, "--no-timeline")
    assert r.exit_code == 0, r.output
    r = cli("plan", d)
    assert "refresh: incremental" in r.output.split("by_city")[1].split("\n")[1], r.output

    def check():
        assert conn.execute("SELECT model, side, row FROM deltapipe.verify('p')").fetchall() == []
        assert conn.execute("SELECT count(*) FROM by_city").fetchone()[0] == len({c for _i, c, _s in rows})
        assert conn.execute("SELECT count(*) FROM versions").fetchone()[0] == conn.execute(
            "SELECT count(*) FROM people_versions").fetchone()[0]
    check()
    steps = [
        lambda rs: [(i, "c9" if i == 3 else c, s + 1 if i % 50 == 0 else s) for i, c, s in rs],  # updates
        lambda rs: [x for x in rs if x[0] % 40],                                                # deletes
        lambda rs: rs + [(40, "c0", 1), (80, "new", 2)],                                        # re-inserts
        lambda rs: rs,                                                                          # unchanged
    ]
    for step in steps:
        rows = step(rows)
        (d / "data/people.csv").write_text(people(rows))
        r = cli("run", d, "--no-timeline")
        assert r.exit_code == 0, r.output
        rid = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
        st = dict(conn.execute("SELECT node, strategy FROM deltapipe.node_run WHERE run_id = %s", (rid,)).fetchall())
        if step is not steps[-1]:
            assert st["by_city"] == "incremental", st
        check()
    # the model reading the versions on purpose has every version, closed ones too
    assert conn.execute("SELECT count(*) FROM versions WHERE id = 40").fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM versions WHERE valid_to IS NULL").fetchone()[0] == len(rows)


def test_a_table_of_that_name_not_made_for_the_dataset_is_left_alone(cli, conn, write):
    conn.execute("CREATE TABLE t_history (x int)")
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric")
    r = cli("load", "t", write("1.csv", HEAD + "1,a,1\n"))
    assert r.exit_code == 0 and "versions" not in r.output, r.output
    line = one_error_line(cli("load", "t", write("2.csv", HEAD + "1,b,1\n"), "--mode", "history"))
    assert "t_history exists and is not the history table of dataset t" in line, line
    cli("dataset", "drop", "t", "--drop-table")
    assert conn.execute("SELECT to_regclass('public.t_history')").fetchone()[0] is not None


def test_a_writer_keeps_history_and_a_reader_reads_it(conn, dsn, write):
    from click.testing import CliRunner

    from deltapipe.cli import main
    from test_roles import as_user, login
    login(conn, "dp_hist_reader", "deltapipe_reader")
    login(conn, "dp_hist_writer", "deltapipe_writer")
    conn.execute("SELECT deltapipe.create_dataset('t', ARRAY['id'], 'id bigint, name text, amount numeric')")
    writer, reader = as_user(dsn, "dp_hist_writer"), as_user(dsn, "dp_hist_reader")
    for i, body in enumerate(["1,a,1\n2,b,2\n", "1,a,1\n2,c,2\n"]):
        run = CliRunner().invoke(main, ["load", "t", str(write("%d.csv" % i, HEAD + body)), "--mode", "history",
                                        "--dsn", writer])
        assert run.exit_code == 0, run.output
    with psycopg.connect(reader, autocommit=True) as r:
        assert r.execute("SELECT id, name FROM t_history ORDER BY id, valid_from").fetchall() == [
            (1, "a"), (2, "b"), (2, "c")]
