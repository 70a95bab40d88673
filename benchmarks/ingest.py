"""Ingest benchmark: deltapipe.ingest against a plain upsert of the same rows, as a RATIO measured in the same run.

    .venv/bin/python benchmarks/ingest.py                      # 100 calls x 500 rows, 3 rounds, 100k-row table
    .venv/bin/python benchmarks/ingest.py --calls 20 --rounds 1 # quick
    .venv/bin/python benchmarks/ingest.py --dsn postgresql://user@host/db

Reference: `INSERT INTO ref SELECT * FROM jsonb_to_recordset($1) ... ON CONFLICT (id) DO UPDATE SET ...`, one
transaction per call, into a plain table with the dataset's columns and primary key. Measured: `SELECT
deltapipe.ingest('bench_ingest', $1)` of the same JSON, one transaction per call, which also types and checks
every row, coalesces the ops per key, records the run, the changeset (before- and after-images) and the dataset
checksum. Each call is 500 rows (--rows-per-call): 70% updates of existing keys, 25% new keys, 5% keys given
twice in the call. Both start from the same --table-rows rows. Target: ingest / reference <= 2.0.

The calls alternate (reference, ingest, reference...) so that both see the same machine load; each round
uses new batches; the summary is the median ratio of the rounds. At the end both tables must hold the same rows.

Database: --dsn, else $DELTAPIPE_DSN, else the local benchmark server in /var/tmp/deltapipe-bench/pg (started
if needed); a database dpbench_ingest is created (dropped first) and deltapipe installed into it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

import psycopg

from deltapipe.install import install
from deltapipe.server import LocalServer

COLS = "id bigint, customer text, amount numeric, day date, note text"
REF = ("INSERT INTO bench_ref SELECT * FROM jsonb_to_recordset(%s::jsonb) AS r(" + COLS + ") "
       "ON CONFLICT (id) DO UPDATE SET customer = excluded.customer, amount = excluded.amount, day = excluded.day, "
       "note = excluded.note")
INGEST = "SELECT deltapipe.ingest('bench_ingest', %s::jsonb)"


def row(rnd: random.Random, i: int) -> dict:
    return {"id": i, "customer": "c%d" % rnd.randrange(5000), "amount": round(rnd.random() * 500, 2),
            "day": "2024-%02d-%02d" % (rnd.randint(1, 12), rnd.randint(1, 28)),
            "note": rnd.choice(["", "gift", "express", None])}


def batch(rnd: random.Random, n: int, existing: int, next_id: list) -> str:
    rows = []
    for _ in range(n):
        x = rnd.random()
        if x < 0.70:
            rows.append(row(rnd, rnd.randint(1, existing)))
        elif x < 0.95 or not rows:
            next_id[0] += 1
            rows.append(row(rnd, next_id[0]))
        else:
            rows.append(row(rnd, rnd.choice(rows)["id"]))   # a key given twice: the last one wins
    # the reference cannot take a key twice in one statement: it gets the last row of each key
    return json.dumps(rows)


def last_per_key(js: str) -> str:
    rows = {}
    for r in json.loads(js):
        rows[r["id"]] = r
    return json.dumps(list(rows.values()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--rows-per-call", type=int, default=500)
    ap.add_argument("--table-rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dsn", default=os.environ.get("DELTAPIPE_DSN"))
    a = ap.parse_args()
    admin = a.dsn or LocalServer.at("/var/tmp/deltapipe-bench/pg").start()
    db = "dpbench_ingest"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS %s" % db)
        c.execute("CREATE DATABASE %s" % db)
    dsn = admin.rsplit("/", 1)[0] + "/" + db
    install(dsn)
    rnd = random.Random(20)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT deltapipe.create_dataset('bench_ingest', ARRAY['id'], %s)", (COLS,))
        c.execute("CREATE TABLE bench_ref (%s, PRIMARY KEY (id))" % COLS)
        for lo in range(1, a.table_rows + 1, 10_000):
            js = json.dumps([row(rnd, i) for i in range(lo, min(lo + 10_000, a.table_rows + 1))])
            c.execute(INGEST, (js,))
            c.execute(REF, (js,))
        c.execute("VACUUM ANALYZE bench_ref")
        c.execute("VACUUM ANALYZE bench_ingest")
    next_id = [a.table_rows]
    ratios = []
    with psycopg.connect(dsn) as c:
        # warm up both paths (plans, caches)
        for _ in range(3):
            js = batch(rnd, a.rows_per_call, a.table_rows, next_id)
            c.execute(REF, (last_per_key(js),))
            c.commit()
            c.execute(INGEST, (js,))
            c.commit()
        for rd in range(a.rounds):
            t_ref = t_ing = 0.0
            received = after = 0
            for _ in range(a.calls):
                js = batch(rnd, a.rows_per_call, a.table_rows, next_id)
                ref_js = last_per_key(js)
                t0 = time.perf_counter()
                c.execute(REF, (ref_js,))
                c.commit()
                t1 = time.perf_counter()
                r = c.execute(INGEST, (js,)).fetchone()[0]
                c.commit()
                t2 = time.perf_counter()
                t_ref += t1 - t0
                t_ing += t2 - t1
                assert r["rejected"] == [], r["rejected"][:3]
                received += r["received"]
                after += r["after_coalesce"]
            ratios.append(t_ing / t_ref)
            print("round %d: %d calls x %d rows (%d after coalescing): reference %.3fs (%.2f ms/call), "
                  "ingest %.3fs (%.2f ms/call), ratio %.2f"
                  % (rd + 1, a.calls, a.rows_per_call, after, t_ref, 1000 * t_ref / a.calls, t_ing,
                     1000 * t_ing / a.calls, t_ing / t_ref), flush=True)
        same = c.execute("SELECT (SELECT count(*) FROM (SELECT id, customer, amount, day, note FROM bench_ingest "
                         "EXCEPT SELECT * FROM bench_ref) x) + (SELECT count(*) FROM (SELECT * FROM bench_ref EXCEPT "
                         "SELECT id, customer, amount, day, note FROM bench_ingest) y)").fetchone()[0]
    med = statistics.median(ratios)
    print("ingest / INSERT ... ON CONFLICT DO UPDATE of the same rows: median ratio %.2f over %d rounds "
          "(target <= 2.0: %s); tables equal: %s" % (med, a.rounds, "met" if med <= 2.0 else "MISSED", same == 0))
    return 0 if same == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
