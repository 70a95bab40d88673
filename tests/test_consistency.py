"""Reading while writing: a reader sees the old or the new state of a load, never a mix."""

from __future__ import annotations

import threading

import psycopg

from deltapipe.load.loader import LoadOptions, load_file


def test_readers_see_whole_loads_only(dsn, conn, write):
    conn.execute("SELECT deltapipe.create_dataset('t', ARRAY['id'], 'id bigint, v int')")
    files = []
    for gen in range(4):
        # each version changes a different share: small (merge) and large (swap) publishes
        n_changed = 50 if gen % 2 else 4000
        rows = "".join("%d,%d\n" % (i, gen if i < n_changed else 0) for i in range(8000))
        files.append(write("v%d.csv" % gen, "id,v\n" + rows))
    load_file(dsn, "t", files[0], LoadOptions(), progress=False)
    states = {conn.execute("SELECT sum(_dp_hash::numeric), count(*) FROM t").fetchone()}
    seen, stop, errors = set(), threading.Event(), []

    def reader():
        with psycopg.connect(dsn, autocommit=True) as c:
            while not stop.is_set():
                try:
                    seen.add(c.execute("SELECT sum(_dp_hash::numeric), count(*) FROM t").fetchone())
                    # one statement sees one snapshot; a second one in a repeatable-read
                    # transaction must see the same state as the first
                    with c.transaction():
                        c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                        a = c.execute("SELECT sum(v), count(*) FROM t").fetchone()
                        b = c.execute("SELECT sum(v), count(*) FROM t").fetchone()
                        if a != b:
                            errors.append((a, b))
                except psycopg.Error as e:
                    errors.append(e)

    th = threading.Thread(target=reader)
    th.start()
    try:
        for f in files[1:]:
            r = load_file(dsn, "t", f, LoadOptions(), progress=False)
            states.add(conn.execute("SELECT sum(_dp_hash::numeric), count(*) FROM t").fetchone())
            assert r["strategy"] in ("merge", "swap")
    finally:
        stop.set()
        th.join()
    assert not errors
    assert len(seen) >= 2 and seen <= states, seen - states
