"""The load path through the library and the data in the tables afterwards."""

from __future__ import annotations

import csv
import io
import json

import psycopg
import pytest

from deltapipe.errors import DeltapipeError
from deltapipe.load.loader import LoadOptions, load_file

COLS = "id bigint, name text, amount numeric, day date, ok boolean"
HEAD = "id,name,amount,day,ok\n"


def mkds(conn, name="t", cols=COLS, key=("id",), mode="snapshot", target=None):
    conn.execute("SELECT deltapipe.create_dataset(%s, %s, %s, %s, %s)", (name, list(key), cols, target, mode))


def table(conn, name="t", cols="id, name, amount, day, ok"):
    return sorted(conn.execute("SELECT %s FROM public.%s" % (cols, name)).fetchall(), key=repr)


def rejects(conn, run_id):
    return conn.execute("SELECT line_no, column_name, sqlstate, message, raw_line FROM deltapipe.reject "
                        "WHERE run_id = %s ORDER BY line_no", (run_id,)).fetchall()


def reconcile(r):
    extra = r["deleted"] if r["mode"] == "changes" else 0
    assert r["rows_in"] == r["inserted"] + r["updated"] + r["unchanged"] + r["rejected"] + r["duplicates"] + extra, r


def load(dsn, path, name="t", **kw):
    r = load_file(dsn, name, path, LoadOptions(**kw), progress=False)
    if r["status"] == "done":
        reconcile(r)
    return r


def test_snapshot_first_load_then_changes(dsn, conn, write):
    mkds(conn)
    v1 = write("v1.csv", HEAD + "1,a,1.5,2024-01-01,true\n2,b,2,2024-01-02,false\n3,c,,2024-01-03,\n")
    r = load(dsn, v1)
    assert (r["inserted"], r["updated"], r["deleted"], r["strategy"]) == (3, 0, 0, "create")
    assert table(conn)[0][0] == 1 and len(table(conn)) == 3
    v2 = write("v2.csv", HEAD + "1,a,1.5,2024-01-01,true\n2,b,2.5,2024-01-02,false\n4,d,4,2024-01-04,true\n")
    r = load(dsn, v2, strategy="merge")
    assert (r["inserted"], r["updated"], r["deleted"], r["unchanged"]) == (1, 1, 1, 1)
    assert [x[0] for x in table(conn)] == [1, 2, 4]
    assert conn.execute("select amount from t where id = 2").fetchone()[0] == 2.5
    # the before-images are in the changeset
    ops = conn.execute("SELECT op, key->>'id', before->>'amount' FROM deltapipe.changeset WHERE run_id = %s "
                       "ORDER BY 2", (r["run_id"],)).fetchall()
    assert ops == [("U", "2", "2"), ("D", "3", None), ("I", "4", None)]
    # and the after-images of the inserts and updates: the rows as they are now
    after = conn.execute("SELECT key->>'id', after FROM deltapipe.changeset WHERE run_id = %s ORDER BY 1",
                         (r["run_id"],)).fetchall()
    assert after == [("2", {"id": 2, "name": "b", "amount": 2.5, "day": "2024-01-02", "ok": False}), ("3", None),
                     ("4", {"id": 4, "name": "d", "amount": 4, "day": "2024-01-04", "ok": True})]
    # the checksum kept from deltas equals the checksum recomputed from the table
    kept, recomputed = conn.execute("SELECT d.checksum, (SELECT sum(_dp_hash::numeric) FROM t) "
                                    "FROM deltapipe.dataset d WHERE name = 't'").fetchone()
    assert kept == recomputed


def test_after_images_of_a_dataset_of_120_columns(dsn, conn, write):
    """jsonb_build_object takes at most 100 arguments: a wide row's after-image is built in parts."""
    names = ["c%03d" % i for i in range(119)]
    mkds(conn, cols="id bigint, " + ", ".join("%s int" % n for n in names), mode="upsert")
    head = "id," + ",".join(names) + "\n"
    load(dsn, write("w1.csv", head + "1," + ",".join("0" for _ in names) + "\n"))
    r = load(dsn, write("w2.csv", head + "1," + ",".join(str(i) for i in range(119)) + "\n"))
    assert r["updated"] == 1
    after, before = conn.execute("SELECT after, before FROM deltapipe.changeset WHERE run_id = %s",
                                 (r["run_id"],)).fetchone()
    assert after == {"id": 1, **{n: i for i, n in enumerate(names)}}
    assert before["c118"] == 0 and before["id"] == 1


def test_swap_strategy_gives_same_result_as_merge(dsn, conn, write):
    mkds(conn)
    mkds(conn, "u", target="public.u")
    v1 = write("v1.csv", HEAD + "".join("%d,n%d,%d,2024-01-01,true\n" % (i, i, i) for i in range(1, 50)))
    v2 = write("v2.csv", HEAD + "".join("%d,m%d,%d,2024-01-02,false\n" % (i, i, i) for i in range(20, 80)))
    for name, strategy in (("t", "swap"), ("u", "merge")):
        load(dsn, v1, name)
        r = load(dsn, v2, name, strategy=strategy)
        assert r["strategy"] == strategy
    assert table(conn, "t") == table(conn, "u")
    assert conn.execute("SELECT count(DISTINCT checksum) FROM deltapipe.dataset").fetchone()[0] == 1
    # the swapped-in table still has its primary key
    assert conn.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.t'::regclass "
                        "AND contype = 'p'").fetchone()[0] == 1


def test_same_file_is_skipped_and_forced_reload_writes_nothing(dsn, conn, write):
    mkds(conn)
    v1 = write("v1.csv", HEAD + "1,a,1,2024-01-01,true\n2,b,2,2024-01-02,true\n")
    load(dsn, v1)
    before = conn.execute("SELECT ctid::text, xmin::text FROM t ORDER BY id").fetchall()
    r = load(dsn, v1)
    assert r["status"] == "skipped" and "SHA-256" in r["skip_reason"]
    r = load(dsn, v1, force=True)
    assert (r["inserted"], r["updated"], r["deleted"], r["unchanged"]) == (0, 0, 0, 2)
    assert conn.execute("SELECT ctid::text, xmin::text FROM t ORDER BY id").fetchall() == before


def test_upsert_never_deletes(dsn, conn, write):
    mkds(conn, mode="upsert")
    load(dsn, write("a.csv", HEAD + "1,a,1,2024-01-01,true\n2,b,2,2024-01-02,true\n"))
    r = load(dsn, write("b.csv", HEAD + "2,B,2,2024-01-02,true\n3,c,3,2024-01-03,true\n"))
    assert (r["inserted"], r["updated"], r["deleted"]) == (1, 1, 0)
    assert [(x[0], x[1]) for x in table(conn)] == [(1, "a"), (2, "B"), (3, "c")]


def test_append_refuses_changed_rows_under_existing_keys(dsn, conn, write):
    mkds(conn, mode="append")
    load(dsn, write("a.csv", HEAD + "1,a,1,2024-01-01,true\n"))
    r = load(dsn, write("b.csv", HEAD + "1,a,1,2024-01-01,true\n1,x,9,2024-01-01,true\n2,b,2,2024-01-02,true\n"))
    # line 2 and 3 share key 1: the last one wins, and it differs from the table -> refused
    assert (r["inserted"], r["updated"], r["unchanged"], r["rejected"], r["duplicates"]) == (1, 0, 0, 1, 1)
    assert [(x[0], x[1]) for x in table(conn)] == [(1, "a"), (2, "b")]
    rj = rejects(conn, r["run_id"])
    assert rj[0][0] == 3 and rj[0][2] == "DP105" and rj[0][4] == "1,x,9,2024-01-01,true"


def test_changes_mode_coalesces_ops_per_key(dsn, conn, write):
    mkds(conn, mode="changes")
    head = "op,id,name,amount,day,ok\n"
    load(dsn, write("c0.csv", head + "insert,1,a,1,2024-01-01,true\ninsert,2,b,2,2024-01-01,true\n"
                                     "insert,3,c,3,2024-01-01,true\n"))
    r = load(dsn, write("c1.csv", head +
                        "update,1,a2,1,2024-01-01,true\n"     # 1 updated twice -> last wins
                        "update,1,a3,1,2024-01-01,true\n"
                        "delete,2,,,,\n"                      # 2 deleted
                        "insert,9,z,9,2024-01-01,true\n"      # 9 inserted then deleted: no trace
                        "delete,9,,,,\n"
                        "upsert,3,c,3,2024-01-01,true\n"      # 3 unchanged
                        "insert,4,d,4,2024-01-01,true\n"))    # 4 new
    assert (r["inserted"], r["updated"], r["deleted"], r["unchanged"], r["duplicates"]) == (1, 1, 1, 2, 2)
    assert [(x[0], x[1]) for x in table(conn)] == [(1, "a3"), (3, "c"), (4, "d")]
    assert conn.execute("SELECT count(*) FROM deltapipe.changeset WHERE run_id = %s AND key->>'id' = '9'",
                        (r["run_id"],)).fetchone()[0] == 0


def test_changes_mode_order_column(dsn, conn, write):
    mkds(conn, cols="id bigint, name text, seq int", mode="changes")
    r = load(dsn, write("c.csv", "op,id,name,seq\nupdate,1,late,2\ninsert,1,early,1\n"), order_column="seq")
    assert r["inserted"] == 1
    assert conn.execute("SELECT name FROM t").fetchone()[0] == "late"


def test_each_kind_of_reject(dsn, conn, write):
    mkds(conn)
    text = (HEAD +
            "1,ok,1,2024-01-01,true\n"          # 2 good
            "2,bad amount,12x,2024-01-01,true\n"  # 3 cast error
            "3,bad day,1,2024-02-30,true\n"     # 4 date out of range
            "4,too,few\n"                       # 5 wrong number of fields
            ",no key,1,2024-01-01,true\n"        # 6 null key
            '5,bad\rcr,1,2024-01-01,true\n'    # 7 malformed: a carriage return outside quotes (COPY refuses it)
            "6,bad bool,1,2024-01-01,maybe\n"   # 8 boolean
            "7,fine,2,2024-01-02,false\n")      # 9 good
    r = load(dsn, write("r.csv", text))
    assert (r["rows_in"], r["inserted"], r["rejected"]) == (8, 2, 6)
    rj = rejects(conn, r["run_id"])
    assert [(x[0], x[1], x[2]) for x in rj] == [
        (3, "amount", "22P02"), (4, "day", "22008"), (5, None, "DP101"), (6, "id", "DP102"),
        (7, None, "DP103"), (8, "ok", "22P02")]
    assert rj[0][4] == "2,bad amount,12x,2024-01-01,true"
    assert "expected 5 fields, found 3" in rj[2][3]
    assert [x[0] for x in table(conn)] == [1, 7]


def test_many_bad_rows_among_many_good(dsn, conn, write):
    mkds(conn)
    lines = [HEAD]
    bad = set(range(7, 20000, 97))
    for i in range(1, 20001):
        lines.append("%d,n,%s,2024-01-01,true\n" % (i, "oops" if i in bad else i))
    r = load(dsn, write("m.csv", "".join(lines)))
    assert r["rejected"] == len(bad) and r["inserted"] == 20000 - len(bad)
    got = {x[0] for x in rejects(conn, r["run_id"])}
    assert got == {i + 1 for i in bad}  # line numbers: the header is line 1


def test_duplicate_keys_last_wins(dsn, conn, write):
    mkds(conn)
    r = load(dsn, write("d.csv", HEAD + "1,first,1,2024-01-01,true\n2,b,2,2024-01-01,true\n1,last,1,2024-01-01,true\n"))
    assert (r["inserted"], r["duplicates"]) == (2, 1)
    assert conn.execute("SELECT name FROM t WHERE id = 1").fetchone()[0] == "last"


def test_csv_quoting_commas_quotes_newlines_and_line_numbers(dsn, conn, write):
    mkds(conn, cols="id bigint, note text, n int")
    rows = [(1, "plain", 1), (2, "with, comma", 2), (3, 'say "hi"', 3), (4, "two\nlines", 4),
            (5, "", 5), (6, "three\nline\nnote, \"q\"", 6)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "note", "n"])
    w.writerows(rows)
    buf.write("7,after multiline,notanumber\n")
    r = load(dsn, write("q.csv", buf.getvalue()))
    assert r["inserted"] == 6 and r["rejected"] == 1
    got = conn.execute("SELECT id, note, n FROM t ORDER BY id").fetchall()
    # csv.writer writes "" unquoted: an unquoted empty field is NULL, as in PostgreSQL's COPY
    assert got == [(i, note or None, n) for i, note, n in rows]
    # the header is line 1, records 4 and 6 span 2 and 3 lines: the bad row is on physical line 11
    rj = rejects(conn, r["run_id"])
    assert rj[0][0] == 11 and rj[0][1] == "n"


def test_quoted_empty_is_empty_string_and_unquoted_empty_is_null(dsn, conn, write):
    mkds(conn, cols="id bigint, a text, b text")
    load(dsn, write("e.csv", 'id,a,b\n1,"",\n2,"x,y",""\n'))
    assert conn.execute("SELECT id, a, b FROM t ORDER BY id").fetchall() == [(1, "", None), (2, "x,y", "")]


def test_tsv(dsn, conn, write):
    mkds(conn)
    r = load(dsn, write("t.tsv", "id\tname\tamount\tday\tok\n1\ta, b\t1\t2024-01-01\tt\n2\t\"q\"\t2\t2024-01-02\tf\n"))
    assert r["inserted"] == 2
    assert conn.execute("SELECT name FROM t ORDER BY id").fetchall() == [("a, b",), ('"q"',)]


def test_ndjson(dsn, conn, write):
    mkds(conn, cols="id bigint, name text, tags jsonb, ok boolean")
    text = "\n".join([json.dumps({"id": 1, "name": "a", "tags": ["x"], "ok": True}),
                      json.dumps({"id": 2, "name": "b", "extra": 1}),
                      "{not json",
                      json.dumps([1, 2]),
                      json.dumps({"id": 3, "ok": "nope"})]) + "\n"
    r = load(dsn, write("n.ndjson", text))
    assert (r["rows_in"], r["inserted"], r["rejected"]) == (5, 2, 3)
    assert conn.execute("SELECT id, name, tags, ok FROM t ORDER BY id").fetchall() == [
        (1, "a", ["x"], True), (2, "b", None, None)]
    rj = rejects(conn, r["run_id"])
    assert [(x[0], x[2]) for x in rj] == [(3, "22P02"), (4, "DP106"), (5, "22P02")]
    assert rj[0][4] == "{not json"


def test_no_header_delimiter_null_and_encoding(dsn, conn, write):
    mkds(conn, cols="id bigint, name text")
    r = load(dsn, write("l.csv", "1;caf\xe9\n2;NULL\n".encode("latin1")), header=False, delimiter=";",
             null="NULL", encoding="latin1")
    assert r["inserted"] == 2
    assert conn.execute("SELECT name FROM t ORDER BY id").fetchall() == [("café",), (None,)]


def test_crlf_and_bom(dsn, conn, write):
    mkds(conn, cols="id bigint, name text")
    load(dsn, write("w.csv", b"\xef\xbb\xbfid,name\r\n1,a\r\n2,\"b\r\nc\"\r\n"))
    assert conn.execute("SELECT id, name FROM t ORDER BY id").fetchall() == [(1, "a"), (2, "b\nc")]


def test_typmods_are_enforced_not_truncated(dsn, conn, write):
    mkds(conn, cols="id bigint, code varchar(3), price numeric(5,2)")
    r = load(dsn, write("v.csv", "id,code,price\n1,abc,1.234\n2,abcd,1\n3,ab,12345\n"))
    assert r["inserted"] == 1 and r["rejected"] == 2
    assert conn.execute("SELECT code, price::text FROM t").fetchall() == [("abc", "1.23")]
    assert [x[2] for x in rejects(conn, r["run_id"])] == ["22001", "22003"]


def test_empty_snapshot_refused_unless_allowed(dsn, conn, write):
    mkds(conn)
    load(dsn, write("a.csv", HEAD + "1,a,1,2024-01-01,true\n"))
    with pytest.raises(DeltapipeError) as e:
        load(dsn, write("h.csv", HEAD))
    assert e.value.sqlstate == "DP014"
    assert len(table(conn)) == 1
    r = load(dsn, write("h2.csv", HEAD + "\n"), allow_empty=True)
    assert r["deleted"] == 1 and table(conn) == []


def test_failed_load_leaves_target_and_records_failure(dsn, conn, write):
    mkds(conn)
    load(dsn, write("a.csv", HEAD + "1,a,1,2024-01-01,true\n"))
    before = table(conn)
    with pytest.raises(DeltapipeError) as e:
        load(dsn, write("b.csv", 'id,name,amount,day,ok\n2,"unterminated,1,2024-01-01,true\n'), max_rejects="0")
    assert e.value.sqlstate == "DP021" and "lines 2" in e.value.detail
    assert table(conn) == before
    st = conn.execute("SELECT status, sqlstate FROM deltapipe.run ORDER BY id DESC LIMIT 1").fetchone()
    assert st == ("failed", "DP021")
    assert conn.execute("SELECT count(*) FROM deltapipe.staging").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'deltapipe_stage'").fetchone()[0] == 0


def test_sql_only_path(dsn, write):
    """Another application: stage, COPY raw lines itself, CALL deltapipe.load - no Python of ours."""
    with psycopg.connect(dsn) as c:
        c.execute("SELECT deltapipe.create_dataset('orders', ARRAY['id'], 'id bigint, total numeric')")
        stg = c.execute("SELECT deltapipe.stage('orders')").fetchone()[0]
        with c.cursor().copy("COPY %s (_dp_raw) FROM STDIN" % stg) as cp:
            cp.write("id,total\n1,10.5\n2,oops\n3,7\n")
        res = c.execute("CALL deltapipe.load('orders', %s, '{\"mode\": \"upsert\"}')", (stg,)).fetchone()[0]
        c.commit()
        assert (res["inserted"], res["rejected"], res["status"]) == (2, 1, "done")
        assert c.execute("SELECT id, total FROM orders ORDER BY id").fetchall() == [(1, 10.5), (3, 7)]
        assert c.execute("SELECT trigger, status FROM deltapipe.run").fetchall() == [("sql", "done")]
        # the individual steps are callable too
        stg = c.execute("SELECT deltapipe.stage('orders')").fetchone()[0]
        c.execute("INSERT INTO %s (_dp_raw) VALUES ('id,total'), ('1,11')" % stg)
        up = '{"mode": "upsert"}'
        v = c.execute("SELECT deltapipe.validate('orders', %s, %s)", (stg, up)).fetchone()[0]
        d = c.execute("SELECT deltapipe.diff('orders', %s, %s)", (stg, up)).fetchone()[0]
        a = c.execute("SELECT deltapipe.apply('orders', %s, %s)", (stg, up)).fetchone()[0]
        assert (v["valid"], d["updated"], a["strategy"]) == (1, 1, "merge")
        assert c.execute("SELECT total FROM orders WHERE id = 1").fetchone()[0] == 11


def test_unknown_dataset_and_staging_raise_own_sqlstates(conn):
    with pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT deltapipe.stage('nope')")
    assert e.value.diag.sqlstate == "DP001"
    conn.execute("SELECT deltapipe.create_dataset('x', ARRAY['id'], 'id bigint')")
    with pytest.raises(psycopg.Error) as e:
        conn.execute("CALL deltapipe.load('x', 'public.x')")
    assert e.value.diag.sqlstate == "DP007"


@pytest.mark.parametrize("mode", ["snapshot", "upsert"])
def test_duplicates_against_unchanged_rows(dsn, conn, write, mode):
    """Second loads find unchanged lines by hash without parsing them; duplicates must
    still resolve as 'the last line wins' and be counted."""
    mkds(conn, mode=mode)
    a, b, c = "1,a,1,2024-01-01,true\n", "2,b,2,2024-01-01,true\n", "3,c,3,2024-01-01,true\n"
    load(dsn, write("v1.csv", HEAD + a + b + c))
    # identical line twice; key 2 unchanged then changed (changed wins); key 3 changed then unchanged (table wins)
    r = load(dsn, write("v2.csv", HEAD + a + a + b + "2,B,2,2024-01-01,true\n" + "3,C,3,2024-01-01,true\n" + c))
    assert (r["rows_in"], r["duplicates"], r["updated"], r["unchanged"], r["inserted"], r["deleted"]) == (6, 3, 1, 2, 0, 0)
    assert [(x[0], x[1]) for x in table(conn)] == [(1, "a"), (2, "B"), (3, "c")]
    kept, recomputed = conn.execute("SELECT d.checksum, (SELECT sum(_dp_hash::numeric) FROM t) "
                                    "FROM deltapipe.dataset d WHERE name = 't'").fetchone()
    assert kept == recomputed


def test_first_load_duplicates_and_rejects_together(dsn, conn, write):
    mkds(conn)
    r = load(dsn, write("v.csv", HEAD + "1,a,1,2024-01-01,true\n1,b,x,2024-01-01,true\n2,c,2,2024-01-01,true\n"
                                        "2,d,2,2024-01-01,true\n3,e,3,2024-01-01\n"))
    assert (r["inserted"], r["duplicates"], r["rejected"]) == (2, 1, 2)
    assert [(x[0], x[1]) for x in table(conn)] == [(1, "a"), (2, "d")]
    # the target has exactly the dataset's columns plus _dp_hash, and its primary key
    cols = [c[0] for c in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'public.t'::regclass "
                                       "AND attnum > 0 AND NOT attisdropped ORDER BY attnum").fetchall()]
    assert cols == ["id", "name", "amount", "day", "ok", "_dp_hash"]
    assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%dp_load%'").fetchone()[0] == 0


def test_reread_with_other_options_rewrites_hashes_not_rows(dsn, conn, write):
    """Hashes are of the raw line under given read options: the same data read another
    way (here: TSV instead of CSV) matches nothing by hash, is compared by value,
    and only the stored hashes are refreshed."""
    mkds(conn)
    load(dsn, write("a.csv", HEAD + "1,a,1,2024-01-01,true\n2,b,2,2024-01-02,true\n"))
    r = load(dsn, write("a.tsv", HEAD.replace(",", "\t") + "1\ta\t1\t2024-01-01\ttrue\n2\tb\t2\t2024-01-02\ttrue\n"))
    assert (r["inserted"], r["updated"], r["deleted"], r["unchanged"]) == (0, 0, 0, 2)
    assert conn.execute("SELECT count(*) FROM deltapipe.changeset WHERE run_id = %s", (r["run_id"],)).fetchone()[0] == 0
    before = conn.execute("SELECT ctid::text, xmin::text FROM t ORDER BY id").fetchall()
    r = load(dsn, write("b.tsv", HEAD.replace(",", "\t") + "1\ta\t1\t2024-01-01\ttrue\n2\tb\t2\t2024-01-02\ttrue\n"),
             force=True)
    assert r["unchanged"] == 2 and r["strategy"] == "none"
    assert conn.execute("SELECT ctid::text, xmin::text FROM t ORDER BY id").fetchall() == before


def test_snapshot_growing_tenfold_swaps_in_quickly(dsn, conn, write):
    """A snapshot ten times the table's size takes the swap path (it once met a nested-loop plan)."""
    mkds(conn, cols="id bigint, label text")
    load(dsn, write("a.csv", "id,label\n" + "".join("%d,n%d\n" % (i, i) for i in range(5000))))
    r = load(dsn, write("b.csv", "id,label\n" + "".join("%d,n%d\n" % (i, i) for i in range(50000))))
    assert (r["inserted"], r["unchanged"], r["strategy"]) == (45000, 5000, "swap")
    assert conn.execute("SELECT count(*), count(DISTINCT id) FROM t").fetchone() == (50000, 50000)


def test_sha256_recorded_when_computed_during_the_copy(dsn, conn, write):
    import hashlib
    mkds(conn)
    v1 = write("v1.csv", HEAD + "1,a,1.5,2024-01-01,true\n")
    v2 = write("v2.csv", HEAD + "1,a,1.5,2024-01-01,true\n2,b,2,2024-01-02,false\n")
    v3 = write("v3.csv", HEAD + "1,a,1.5,2024-01-01,true\n3,b,2,2024-01-02,false\n")  # same size as v2
    for p in (v1, v2, v3):
        r = load(dsn, p)
        want = hashlib.sha256(p.read_bytes()).hexdigest()
        assert r["status"] == "done" and r["file_sha256"] == want
        assert conn.execute("SELECT last_file_sha256 FROM deltapipe.dataset WHERE name = 't'").fetchone()[0] == want
        assert conn.execute("SELECT args->>'file_sha256' FROM deltapipe.run WHERE id = %s",
                            (r["run_id"],)).fetchone()[0] == want
    assert load(dsn, v3)["status"] == "skipped"
    assert load(dsn, v2)["status"] == "done"
