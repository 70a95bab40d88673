"""Transient errors are retried: a backend terminated in the middle of a load."""

from __future__ import annotations

import threading
import time

import psycopg

from deltapipe.load.loader import LoadOptions, load_file


def test_terminated_backend_is_retried_and_recorded(dsn, conn, write):
    conn.execute("SELECT deltapipe.create_dataset('t', ARRAY['id'], 'id bigint, name text, amount numeric')")
    path = write("big.csv", "id,name,amount\n" + "".join("%d,name %d,%d.5\n" % (i, i, i) for i in range(300000)))
    out = {}

    def run():
        try:
            out["r"] = load_file(dsn, "t", path, LoadOptions(), progress=False)
        except Exception as e:  # pragma: no cover - reported below
            out["e"] = e

    th = threading.Thread(target=run)
    th.start()
    killed = None
    deadline = time.time() + 30
    with psycopg.connect(dsn, autocommit=True) as admin:
        while killed is None and time.time() < deadline and th.is_alive():
            row = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid() AND (query LIKE 'COPY %%' OR query LIKE 'CALL deltapipe.load%%') "
                                "AND state = 'active'").fetchone()
            if row:
                admin.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                killed = row[0]
            time.sleep(0.01)
    th.join(120)
    assert killed, "the load finished before it could be interrupted"
    assert "e" not in out, out.get("e")
    r = out["r"]
    assert r["status"] == "done" and r["inserted"] == 300000
    assert r["phases"]["retries"] == 1 and r["phases"]["retry_errors"][0]
    assert conn.execute("SELECT count(*), count(DISTINCT id) FROM t").fetchone() == (300000, 300000)
    assert conn.execute("SELECT status FROM deltapipe.run WHERE id = %s", (r["run_id"],)).fetchone()[0] == "done"
