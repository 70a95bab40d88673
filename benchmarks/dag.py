"""Pipeline benchmark: a 1M-row source and 6 models in 2 independent branches.

Prints, all measured in this one run:
  workers 2 / workers 1     wall time of refreshing every model (--full-refresh), 2 workers vs 1 (target <= 0.65)
  no-change / full          a re-run with nothing changed vs the first full run (load + models) (target <= 0.05)
  per-node overhead         wall time per node of a run of 60 empty models (target <= 20 ms)

    .venv/bin/python benchmarks/dag.py [--rows 1000000] [--dsn DSN]

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
from deltapipe.server import LocalServer  # noqa: E402

MODELS = {
    # branch A
    "a_net": "-- key: id\nSELECT id, customer, amount * 0.8 AS net, day FROM events WHERE amount > 1",
    "a_customer": "-- key: customer\nSELECT customer, sum(net) AS net, count(*) AS n, max(day) AS last_day "
                  "FROM a_net GROUP BY customer",
    "a_tier": "-- key: customer\nSELECT customer, CASE WHEN net > 5000 THEN 'gold' WHEN net > 2000 THEN 'silver' "
              "ELSE 'bronze' END AS tier, n FROM a_customer",
    # branch B
    "b_tax": "-- key: id\nSELECT id, product, day, amount * 0.2 AS tax, md5(id::text) AS ref FROM events",
    "b_product_day": "-- key: product, day\nSELECT product, day, sum(tax) AS tax, count(*) AS n FROM b_tax "
                     "GROUP BY product, day",
    "b_product": "-- key: product\nSELECT product, sum(tax) AS tax, sum(n) AS n FROM b_product_day GROUP BY product",
}


def make_data(path: Path, rows: int) -> None:
    rnd = random.Random(7)
    with open(path, "w") as f:
        f.write("id,customer,product,amount,day\n")
        for i in range(1, rows + 1):
            f.write("%d,%d,%d,%.2f,2024-%02d-%02d\n" % (i, rnd.randrange(50000), rnd.randrange(1000),
                                                        rnd.random() * 200, 1 + i % 12, 1 + i % 28))


def make_pipeline(root: Path, name: str, models: dict[str, str], source: bool = True) -> Path:
    (root / "models").mkdir(parents=True, exist_ok=True)
    toml = 'name = "%s"\n' % name
    if source:
        toml += ('[[sources]]\ndataset = "events"\nfile = "events.csv"\nkey = "id"\n'
                 'columns = "id bigint, customer int, product int, amount numeric(10,2), day date"\n')
    (root / "pipeline.toml").write_text(toml)
    for n, sql in models.items():
        (root / "models" / (n + ".sql")).write_text(sql)
    return root


def timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dsn", default=os.environ.get("DELTAPIPE_DSN"))
    ap.add_argument("--empty-models", type=int, default=60)
    a = ap.parse_args()
    if a.dsn:
        admin = a.dsn
    else:
        admin = LocalServer.at("/var/tmp/deltapipe-bench/pg").start()
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS dpbench_dag")
        c.execute("CREATE DATABASE dpbench_dag")
    dsn = admin.rsplit("/", 1)[0] + "/dpbench_dag"
    install(dsn)
    with tempfile.TemporaryDirectory(prefix="dpbench-") as tmp:
        root = make_pipeline(Path(tmp) / "big", "big", MODELS)
        t, _ = timed(lambda: make_data(root / "events.csv", a.rows))
        print("data: %d rows, %.0f MB (generated in %.1fs)" % (a.rows, (root / "events.csv").stat().st_size / 1e6, t))

        def go(**kw):
            r = runner.run(dsn, str(root), **kw)
            assert r["status"] == "done", r
            return r

        full, r = timed(lambda: go(workers=2))
        print("full run (load + 6 models, 2 workers): %.2fs" % full)
        nochange, r = timed(lambda: go(workers=2))
        assert all(n["status"] == "skipped" for n in r["nodes"]), r["nodes"]
        print("no-change re-run: %.3fs (all %d nodes skipped)" % (nochange, len(r["nodes"])))
        w1, _ = timed(lambda: go(workers=1, full_refresh=True))
        w2, _ = timed(lambda: go(workers=2, full_refresh=True))
        print("models refresh --full-refresh: 1 worker %.2fs, 2 workers %.2fs" % (w1, w2))

        empty = {"e%03d" % i: "SELECT 1 AS x WHERE false" if i % 3 == 0 else "SELECT * FROM e%03d" % (i - 1)
                 for i in range(a.empty_models)}
        eroot = make_pipeline(Path(tmp) / "empty", "empty", empty, source=False)
        runner.run(dsn, str(eroot), workers=1)  # creates the tables
        te, r = timed(lambda: runner.run(dsn, str(eroot), workers=1, full_refresh=True))
        per_node = te / len(r["nodes"]) * 1000
        ts, r = timed(lambda: runner.run(dsn, str(eroot), workers=1))
        per_skip = ts / len(r["nodes"]) * 1000

    print()
    print("workers 2 / workers 1:   %.2f   (target <= 0.65)" % (w2 / w1))
    print("no-change / full run:    %.3f  (target <= 0.05)" % (nochange / full))
    print("per-node overhead:       %.1f ms per empty model refreshed, %.1f ms per skipped node (target <= 20 ms)"
          % (per_node, per_skip))


if __name__ == "__main__":
    main()
