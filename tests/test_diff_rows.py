"""diff() finds the target rows a snapshot changes by the ctid validate() saw them at.

When the target changed in between (another writer), it looks them up by key instead:
either way the delta, the before-images and the table afterwards are those of a
diff computed from scratch.
"""

from __future__ import annotations

import json

import psycopg

ROWS = 200


def lines(changed: dict[int, str], gone: set[int], new: dict[int, str]) -> str:
    out = ["id,name,qty"]
    for i in range(1, ROWS + 1):
        if i in gone:
            continue
        out.append("%d,%s,%d" % (i, changed.get(i, "n%d" % i), i))
    out += ["%d,%s,0" % (i, n) for i, n in new.items()]
    return "\n".join(out) + "\n"


def stage(c: psycopg.Connection, text: str) -> str:
    stg = c.execute("SELECT deltapipe.stage('dr')").fetchone()[0]
    with c.cursor().copy("COPY %s (_dp_raw) FROM STDIN" % stg) as cp:
        cp.write(text)
    return stg


def run_steps(c: psycopg.Connection, stg: str, between=None) -> tuple[dict, list]:
    opts = json.dumps({"mode": "snapshot"})
    c.execute("SELECT deltapipe.validate('dr', %s, %s)", (stg, opts))
    if between:
        between(c)
    d = c.execute("SELECT deltapipe.diff('dr', %s, %s)", (stg, opts)).fetchone()[0]
    delta = c.execute("SELECT _dp_op, id, _dp_before->>'name' FROM %s_d ORDER BY id" % stg).fetchall()
    return d, delta


def test_diff_by_ctid_and_by_key_when_the_target_moved(dsn):
    changed = {3: "x3", 50: "x50", 199: "x199"}
    gone = {7, 120}
    new = {500: "new500"}
    with psycopg.connect(dsn) as c:
        c.execute("SELECT deltapipe.create_dataset('dr', ARRAY['id'], 'id bigint, name text, qty int')")
        c.execute("CALL deltapipe.load('dr', %s, '{\"mode\": \"snapshot\"}')", (stage(c, lines({}, set(), {})),))
        c.commit()
        want = [("D", 7, "n7"), ("D", 120, "n120"), ("I", 500, None),
                ("U", 3, "n3"), ("U", 50, "n50"), ("U", 199, "n199")]
        text = lines(changed, gone, new)

        # the usual case: rows found by ctid
        d, delta = run_steps(c, stage(c, text))
        assert (d["inserted"], d["updated"], d["deleted"], d["unchanged"]) == (1, 3, 2, ROWS - 5)
        assert sorted(delta, key=lambda r: (r[0], r[1])) == want
        c.rollback()

        # a gone row and a row under a changed key move (new ctid, same values) after validate():
        # the ctids are stale, the rows are found by key, the result is the same
        def move(cx):
            cx.execute("UPDATE dr SET qty = qty WHERE id IN (7, 50)")
        d, delta = run_steps(c, stage(c, text), move)
        assert (d["inserted"], d["updated"], d["deleted"], d["unchanged"]) == (1, 3, 2, ROWS - 5)
        assert sorted(delta, key=lambda r: (r[0], r[1])) == want
        c.rollback()

        # a changed line whose key an unchanged line also has (a duplicate): the row under it
        # is looked up by key, not among the gone ones
        dup = text + "3,n3,3\n"
        d, delta = run_steps(c, stage(c, dup))
        assert d["duplicates"] == 1
        assert ("U", 3, "n3") not in delta and len(delta) == 5
        c.rollback()

        # and the whole load through the ctid path leaves the table a fresh load would
        c.execute("CALL deltapipe.load('dr', %s, '{\"mode\": \"snapshot\"}')", (stage(c, text),))
        c.commit()
        got = c.execute("SELECT id, name, qty FROM dr ORDER BY id").fetchall()
        expect = sorted([(i, changed.get(i, "n%d" % i), i) for i in range(1, ROWS + 1) if i not in gone]
                        + [(i, n, 0) for i, n in new.items()])
        assert got == expect


def test_key_columns_named_like_work_columns(dsn):
    """Keys named h, tid, hh or ctid do not clash with the columns of the work tables."""
    with psycopg.connect(dsn, autocommit=True) as c:
        for name in ("h", "tid", "hh", "ctid_", "matched"):
            ds = "k_" + name
            c.execute("SELECT deltapipe.create_dataset(%s, ARRAY[%s], %s)", (ds, name, '"%s" bigint, v text' % name))
            for text in ("%s,v\n1,a\n2,b\n3,c\n" % name, "%s,v\n1,a\n2,changed\n4,new\n" % name):
                with c.transaction():
                    stg = c.execute("SELECT deltapipe.stage(%s)", (ds,)).fetchone()[0]
                    with c.cursor().copy("COPY %s (_dp_raw) FROM STDIN" % stg) as cp:
                        cp.write(text)
                    r = c.execute("CALL deltapipe.load(%s, %s, '{\"mode\": \"snapshot\"}')", (ds, stg)).fetchone()[0]
            assert (r["inserted"], r["updated"], r["deleted"]) == (1, 1, 1), (name, r)
            assert c.execute('SELECT "%s", v FROM %s ORDER BY 1' % (name, ds)).fetchall() == [
                (1, "a"), (2, "changed"), (4, "new")]


def expect_upsert(state: dict, rows: list[tuple[int, str, int]]) -> tuple[dict, tuple[int, int, int, int]]:
    """The table and (inserted, updated, unchanged, duplicates) after upserting ``rows`` (the last line of a key wins)."""
    last = {}
    for i, name, qty in rows:
        last[i] = (name, qty)
    new = dict(state)
    ins = upd = same = 0
    for i, v in last.items():
        if i not in state:
            ins += 1
        elif state[i] != v:
            upd += 1
        else:
            same += 1
        new[i] = v
    return new, (ins, upd, same, len(rows) - len(last))


def test_upsert_few_lines_by_key_many_lines_by_hash(dsn):
    """An upsert file of few lines next to a large table is parsed whole and compared by key; a large one
    goes through the hash join, whose unmatched table rows outside the file are left alone. Same results."""
    state = {i: ("n%d" % i, i) for i in range(1, ROWS + 1)}
    with psycopg.connect(dsn) as c:
        c.execute("SELECT deltapipe.create_dataset('dr', ARRAY['id'], 'id bigint, name text, qty int')")
        c.execute("CALL deltapipe.load('dr', %s, '{\"mode\": \"snapshot\"}')", (stage(c, lines({}, set(), {})),))
        c.commit()
        small = [(1, "n1", 1), (2, "x2", 2), (300, "new", 0), (3, "x3", 3), (3, "n3", 3), (4, "n4", 4), (4, "n4", 4)]
        large = [(i, "n%d" % i, i) for i in range(5, 140)] + [(7, "y7", 7), (8, "y8", 8), (400, "new4", 1),
                                                              (9, "n9", 9), (2, "n2", 2)]
        for rows, between in ((small, None), (large, None), (large, lambda cx: cx.execute("UPDATE dr SET qty = qty"))):
            text = "id,name,qty\n" + "".join("%d,%s,%d\n" % r for r in rows)
            stg = stage(c, text)
            opts = json.dumps({"mode": "upsert"})
            v = c.execute("SELECT deltapipe.validate('dr', %s, %s)", (stg, opts)).fetchone()[0]
            joined = c.execute("SELECT to_regclass(%s) IS NOT NULL", (stg + "_s",)).fetchone()[0]
            assert joined == (rows is large), v
            if between:
                between(c)
            d = c.execute("SELECT deltapipe.diff('dr', %s, %s)", (stg, opts)).fetchone()[0]
            a = c.execute("SELECT deltapipe.apply('dr', %s, %s)", (stg, opts)).fetchone()[0]
            want, counts = expect_upsert(state, rows)
            assert (d["inserted"], d["updated"], d["unchanged"], d["duplicates"]) == counts, (d, a)
            assert v["rows_in"] == len(rows)
            got = {i: (n, q) for i, n, q in c.execute("SELECT id, name, qty FROM dr").fetchall()}
            assert got == want
            if between:
                c.rollback()
            else:
                c.commit()
                state = want
