"""Citus benchmark: the same pipeline on one server and on a 3-node Citus cluster on this machine,
every figure a RATIO cluster / one server measured in the same run.

    .venv/bin/python benchmarks/citus.py                   # 1M rows
    .venv/bin/python benchmarks/citus.py --rows 100000     # quick run

Both setups run on the coordinator's PostgreSQL (tests/citus_helpers.py: a coordinator and two
workers on loopback ports, 8 shards per distributed table), so the hardware and the settings are the
same: "one server" is a database of the coordinator without the citus extension; "cluster" is a
database with citus, the two workers added, the source dataset and both models distributed by their
first key column. The machine's cores are shared by the three nodes: this measures what Citus costs
or saves on one machine, not what more machines would give.

Data: benchmarks/gendata.py's v1.csv (N rows, 8 columns) and v2.csv (1% changed: 1% updated, 0.5%
deleted, 0.5% new), cached in /var/tmp/deltapipe-bench-citus/<rows>.

Pipeline: source `bench` (key id) and two models: `active_rows` (a filter, key id) and `by_city` (an
aggregate, key city). Measured, each the wall time of the node in deltapipe.node_run:
  initial load    first load of v1 (cluster: the table is distributed in the load's transaction)
  initial build   first build of both models
  snapshot load   load of v2 (1% changed)
  refresh         the models after v2, incrementally (the default run: on the cluster the refresh
                  programs apply the change by key, shard by shard); and, for reference, both
                  through the full-refresh path (--incremental-threshold 0: build, diff and merge).

Skips (exit 0, with a message) when the citus extension is not installed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "controller"))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import gendata  # noqa: E402
from citus_helpers import CitusCluster, citus_available  # noqa: E402
from deltapipe.install import install  # noqa: E402

MODELS = {
    "active_rows": "-- key: id\nSELECT id, name, amount, qty FROM bench WHERE active\n",
    "by_city": "-- key: city\nSELECT city, count(*) AS n, sum(amount) AS total, sum(qty) AS qty FROM bench GROUP BY city\n",
}


def log(msg: str = "") -> None:
    print(msg, flush=True)


def data_files(base: Path, rows: int) -> Path:
    d = base / str(rows)
    if not (d / "v2.csv").exists():
        d.mkdir(parents=True, exist_ok=True)
        log("generating %d rows into %s ..." % (rows, d))
        gendata.generate(d, rows)
    return d


def make_pipeline(root: Path, distributed: bool) -> None:
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    toml = ('name = "cbench"\n[[sources]]\ndataset = "bench"\nfile = "data/bench.csv"\nkey = "id"\n'
            'columns = "%s"\n' % gendata.COLUMNS)
    if distributed:
        toml += "distributed = true\n" + "".join("[models.%s]\ndistributed = true\n" % m for m in MODELS)
    (root / "pipeline.toml").write_text(toml)
    for name, sql in MODELS.items():
        (root / "models" / (name + ".sql")).write_text(sql)


def use(root: Path, src: Path) -> None:
    dst = root / "data" / "bench.csv"
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    dst.symlink_to(src)


def cli(dsn: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "deltapipe", *args], env={**os.environ, "DELTAPIPE_DSN": dsn},
                       text=True, capture_output=True)
    if r.returncode != 0:
        raise SystemExit("deltapipe %s failed:\n%s%s" % (" ".join(args), r.stdout, r.stderr))
    return r.stdout


def node_times(dsn: str) -> dict[str, tuple[float, str]]:
    """{node: (seconds, strategy or note)} of the last run."""
    with psycopg.connect(dsn) as c:
        rows = c.execute("""SELECT node, extract(epoch FROM finished_at - started_at)::float, coalesce(strategy, status)
                              FROM deltapipe.node_run WHERE run_id = (SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline')""").fetchall()
    return {n: (s, st) for n, s, st in rows}


def measure(dsn: str, root: Path, data: Path, distributed: bool) -> dict[str, float]:
    install(dsn)
    make_pipeline(root, distributed)
    cli(dsn, "deploy", str(root))
    use(root, data / "v1.csv")
    cli(dsn, "run", str(root), "--no-timeline")
    t = node_times(dsn)
    out = {"initial load": t["bench"][0], "initial build": t["active_rows"][0] + t["by_city"][0]}
    use(root, data / "v2.csv")
    cli(dsn, "run", str(root), "--no-timeline")
    t = node_times(dsn)
    out["snapshot load"] = t["bench"][0]
    out["refresh"] = t["active_rows"][0] + t["by_city"][0]
    out["_how"] = "%s/%s" % (t["active_rows"][1], t["by_city"][1])
    # the same change through the full-refresh path: back to v1, then v2
    use(root, data / "v1.csv")
    cli(dsn, "run", str(root), "--no-timeline", "--incremental-threshold", "0")
    use(root, data / "v2.csv")
    cli(dsn, "run", str(root), "--no-timeline", "--incremental-threshold", "0")
    t = node_times(dsn)
    out["refresh (full-refresh path)"] = t["active_rows"][0] + t["by_city"][0]
    with psycopg.connect(dsn) as c:
        out["_verify"] = c.execute("SELECT count(*) FROM bench").fetchone()[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--data-dir", default="/var/tmp/deltapipe-bench-citus")
    ap.add_argument("--keep", action="store_true", help="keep the two databases and the cluster running")
    args = ap.parse_args()
    ok, why = citus_available()
    if not ok:
        log("skipped: %s" % why)
        return
    data = data_files(Path(args.data_dir), args.rows)
    cluster = CitusCluster()
    cluster.start()
    import tempfile
    results = {}
    try:
        for name, distributed in (("one server", False), ("cluster", True)):
            db = "dpbench_%s" % ("cluster" if distributed else "single")
            if distributed:
                dsn = cluster.create_database(db)
            else:
                with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as c:
                    c.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
                    c.execute("CREATE DATABASE %s" % db)
                dsn = cluster.dsn(db)
            log("%s: %s" % (name, dsn))
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                results[name] = measure(dsn, Path(tmp) / "cbench", data, distributed)
                log("  done in %.0f s" % (time.perf_counter() - t0))
            if not args.keep:
                cluster.drop_database(db)
    finally:
        if cluster.started_here and not args.keep:
            cluster.stop()
    one, cl = results["one server"], results["cluster"]
    assert one["_verify"] == cl["_verify"], (one["_verify"], cl["_verify"])
    log()
    log("Citus benchmark, %d rows, 1%% changed; coordinator + 2 workers on this machine (8 shards)" % args.rows)
    log("%-30s %12s %12s %9s" % ("", "one server s", "cluster s", "ratio"))
    for k in ("initial load", "initial build", "snapshot load", "refresh"):
        log("%-30s %12.2f %12.2f %8.2fx" % (k, one[k], cl[k], cl[k] / one[k]))
    k = "refresh (full-refresh path)"
    log("%-30s %12.2f %12.2f %8.2fx" % (k, one[k], cl[k], cl[k] / one[k]))
    log("refresh strategies (active_rows/by_city): one server %s, cluster %s" % (one["_how"], cl["_how"]))


if __name__ == "__main__":
    main()
