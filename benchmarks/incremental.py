"""Incremental refresh benchmark: a 1M-row fact table, a 100K-row dimension, and a DAG
filter/projection -> join with the dimension -> GROUP BY aggregate -> a second aggregate over it.

Prints, all measured in this one run on the same DAG and data:
  incremental / full at 1% change     model refresh time from the changes vs in full (target <= 0.10)
  incremental / full at 0.1% change   (target <= 0.03)
  rows written per node against the size of the source delta, WAL written by the incremental run

Each measurement loads a fresh batch of changed fact rows (upsert file, also changing join and group
keys) through the load path, then times CALL deltapipe.run_pipeline (incremental) or the same call
with {"full_refresh": true} on another batch of the same size. deltapipe.verify checks the result.
With --load-sources the pipeline declares no [[sources]]: the datasets fact and dim are created and
loaded the way `deltapipe load` does (deltapipe.load.datasets.create, then loader.load_file with
trigger "cli"), so the models read them as datasets loaded outside the pipeline (target at 1%: <= 0.08).
Each timed refresh starts right after a CHECKPOINT, so that the first change of every page writes a
full-page image (as when refreshes come less often than checkpoints). A first incremental refresh at
1% runs before them as a warm-up and is printed on its own line: right after the build it also reads
from outside shared buffers the pages the build wrote past them (a btree build writes its pages
directly, CREATE TABLE AS through a small ring), which the later refreshes, incremental and full
alike, find cached.

    .venv/bin/python benchmarks/incremental.py [--rows 1000000] [--dim 100000] [--load-sources] [--dsn DSN]
                                               [--explain MS]

--explain MS logs the plans of the statements of the incremental refreshes that take MS ms or more
(auto_explain with ANALYZE, nested statements) to the server log; it slows them down.

Without --dsn (or DELTAPIPE_DSN) a local server is started in /var/tmp/deltapipe-bench/pg.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from deltapipe.pipeline import runner  # noqa: E402
from deltapipe.install import install  # noqa: E402
from deltapipe.load.datasets import create as create_dataset  # noqa: E402
from deltapipe.load.loader import LoadOptions, load_file  # noqa: E402
from deltapipe.server import LocalServer  # noqa: E402

MODELS = {
    "f_sales": "-- key: id\nSELECT id, cust, amount, amount * 0.2 AS tax FROM fact WHERE amount > 5",
    "f_enriched": "-- key: id\nSELECT s.id, s.cust, d.segment, s.amount, s.tax FROM f_sales s JOIN dim d ON d.cust = s.cust",
    "by_customer": ("SELECT cust, segment, count(*) AS n, sum(amount) AS total, avg(tax) AS mean_tax\n"
                    "FROM f_enriched GROUP BY cust, segment"),
    "by_segment": ("SELECT segment, count(*) AS customers, sum(total) AS total, max(total) AS best\n"
                   "FROM by_customer GROUP BY segment"),
}


def fact_line(rnd, i, dim):
    return "%d,%d,%.2f\n" % (i, rnd.randrange(dim), rnd.random() * 200)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=100_000)
    ap.add_argument("--dsn", default=os.environ.get("DELTAPIPE_DSN"))
    ap.add_argument("--load-sources", action="store_true",
                    help="no [[sources]] in the pipeline: fact and dim are created and loaded as `deltapipe load` does")
    ap.add_argument("--explain", type=int, default=None, metavar="MS",
                    help="log plans of incremental-refresh statements taking >= MS ms (auto_explain) to the server log")
    a = ap.parse_args()
    admin = a.dsn or LocalServer.at("/var/tmp/deltapipe-bench/pg").start()
    db = "dpbench_incr_load" if a.load_sources else "dpbench_incr"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS %s" % db)
        c.execute("CREATE DATABASE %s" % db)
    dsn = admin.rsplit("/", 1)[0] + "/" + db
    install(dsn)
    rnd = random.Random(11)
    with tempfile.TemporaryDirectory(prefix="dpbench-incr-") as tmp:
        root = Path(tmp) / "incr"
        (root / "models").mkdir(parents=True)
        sources = [("fact", "id", "id bigint, cust int, amount numeric(10,2)"), ("dim", "cust", "cust int, segment text")]
        if a.load_sources:
            (root / "pipeline.toml").write_text('name = "incr"\n')
        else:
            (root / "pipeline.toml").write_text('name = "incr"\n' + "".join(
                '[[sources]]\ndataset = "%s"\nfile = "%s.csv"\nkey = "%s"\nmode = "upsert"\ncolumns = "%s"\n'
                % (ds, ds, key, cols) for ds, key, cols in sources))
        for n, sql in MODELS.items():
            (root / "models" / (n + ".sql")).write_text(sql)
        with open(root / "fact.csv", "w") as f:
            f.write("id,cust,amount\n")
            for i in range(1, a.rows + 1):
                f.write(fact_line(rnd, i, a.dim))
        with open(root / "dim.csv", "w") as f:
            f.write("cust,segment\n")
            for k in range(a.dim):
                f.write("%d,s%02d\n" % (k, k % 20))
        t0 = time.perf_counter()
        if a.load_sources:
            # as `deltapipe dataset create` and `deltapipe load` do: datasets outside the pipeline
            for ds, key, cols in sources:
                create_dataset(dsn, ds, [key], columns=cols, mode="upsert")
                load_file(dsn, ds, root / (ds + ".csv"), LoadOptions(mode="upsert"), progress=False, trigger="cli")
            t_load = time.perf_counter() - t0
            t0 = time.perf_counter()
        r = runner.run(dsn, str(root), workers=1)
        assert r["status"] == "done", r
        if a.load_sources:
            print("setup: fact (%d rows) and dim (%d rows) loaded with `deltapipe load` %.1fs; first run (build 4 models) "
                  "%.1fs" % (a.rows, a.dim, t_load, time.perf_counter() - t0))
        else:
            print("setup: first run (load %d + %d rows, build 4 models) %.1fs" % (a.rows, a.dim, time.perf_counter() - t0))
        conn = psycopg.connect(dsn, autocommit=True)
        if a.load_sources:
            for m, inc, shape, why in conn.execute("SELECT name, incremental, shape, why_full FROM deltapipe.model "
                                                   "WHERE pipeline = 'incr' ORDER BY name").fetchall():
                print("    plan %-12s %s" % (m, ("incremental (%s)" % shape) if inc else "full: %s" % why))
        batch = [0]

        def change(share: float) -> int:
            """Load a batch of changed fact rows (new amounts; some move to another customer)."""
            batch[0] += 1
            n = max(1, int(a.rows * share))
            p = Path(tmp) / ("change_%d.csv" % batch[0])
            with open(p, "w") as f:
                f.write("id,cust,amount\n")
                for i in rnd.sample(range(1, a.rows + 1), n):
                    f.write(fact_line(rnd, i, a.dim))
            res = load_file(dsn, "fact", p, LoadOptions(mode="upsert"), progress=False, trigger="cli")
            return res["inserted"] + res["updated"] + res["deleted"]

        def wal() -> tuple[int, float, int]:
            conn.execute("SELECT pg_stat_force_next_flush()")  # (a backend reports its WAL at most once a second)
            fpi, mb = conn.execute("SELECT wal_fpi, wal_bytes / 1e6 FROM pg_stat_wal").fetchone()
            reads = conn.execute("SELECT coalesce(sum(coalesce(heap_blks_read, 0) + coalesce(idx_blks_read, 0)), 0) "
                                 "FROM pg_statio_user_tables").fetchone()[0]
            return int(fpi), float(mb), int(reads)

        def refresh(full: bool) -> tuple[float, int, tuple[int, float, int]]:
            if a.explain is not None:
                conn.execute("LOAD 'auto_explain'")
                for k, v in (("log_min_duration", "-1" if full else str(a.explain)), ("log_nested_statements", "on"),
                             ("log_analyze", "on"), ("log_buffers", "on")):
                    conn.execute("SELECT set_config(%s, %s, false)", ("auto_explain." + k, v))
            # every measured refresh starts right after a checkpoint: the first change of each page
            # writes a full-page image to the WAL, as in a pipeline refreshed less often than the
            # checkpoints come (5 minutes by default), whatever the earlier refreshes touched
            conn.execute("CHECKPOINT")
            w0 = wal()
            t = time.perf_counter()
            run_id = conn.execute("CALL deltapipe.run_pipeline('incr', 'sql', %s, NULL)",
                                  ('{"full_refresh": %s}' % ("true" if full else "false"),)).fetchone()[0]
            dt = time.perf_counter() - t
            w1 = wal()  # (the whole cluster's WAL: nothing else should write meanwhile)
            st = conn.execute("SELECT status FROM deltapipe.run WHERE id = %s", (run_id,)).fetchone()[0]
            assert st == "done", st
            return dt, run_id, (w1[0] - w0[0], w1[1] - w0[1], w1[2] - w0[2])

        # the first refresh after the build reads the pages that the build wrote past shared buffers
        # (a btree build writes its pages directly, CREATE TABLE AS through a small ring): measured
        # and printed, but as a warm-up, so that the incremental and the full refreshes below both
        # run with the same caches
        d_cold = change(0.01)
        t_cold, _, w_cold = refresh(False)
        results = {}
        for share in (0.01, 0.001):
            d_inc = change(share)
            t_inc, rid_inc, w_inc = refresh(False)
            d_full = change(share)
            t_full, _, _ = refresh(True)
            results[share] = (t_inc, t_full, d_inc, d_full, rid_inc, w_inc)
        bad = conn.execute("SELECT count(*) FROM deltapipe.verify('incr')").fetchone()[0]
        print("warm-up: first incremental refresh after the build, 1%% change (%d source rows): %.3fs = %.3f of the "
              "full refresh at 1%% below; %d blocks read from outside shared buffers"
              % (d_cold, t_cold, t_cold / results[0.01][1], w_cold[2]))
        for share, (t_inc, t_full, d_inc, d_full, rid, w_inc) in results.items():
            target = (0.08 if a.load_sources else 0.10) if share == 0.01 else 0.03
            print("%.1f%% change (%d source rows): incremental %.3fs, full %.3fs, incremental / full = %.3f (target <= %.2f)"
                  % (share * 100, d_inc, t_inc, t_full, t_inc / t_full, target))
            print("    incremental run: %.1f MB of WAL, %d full-page images, %d blocks read from outside shared buffers"
                  % (w_inc[1], w_inc[0], w_inc[2]))
            for node, strat, ins, upd, dele, why, ms in conn.execute(
                    "SELECT node, strategy, inserted, updated, deleted, full_because, "
                    "round(extract(epoch FROM finished_at - started_at) * 1000) FROM deltapipe.node_run "
                    "WHERE run_id = %s ORDER BY id", (rid,)).fetchall():
                w = ins + upd + dele
                print("    %-12s %-12s %6d ms  rows written %7d = %.2f x delta%s"
                      % (node, strat, ms, w, w / max(d_inc, 1), "  (%s)" % why if why else ""))
        print("verify: %s" % ("all models equal their full recompute" if bad == 0 else "%d mismatching rows" % bad))
        conn.close()


if __name__ == "__main__":
    main()
