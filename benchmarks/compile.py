"""Compile and no-change-run overhead of a 30-model star-schema pipeline.

The pipeline reads 6 source datasets declared in pipeline.toml (a fact table, sales, and 5 dimensions:
customer, product, store, calendar, promo) with a few thousand rows in all, so that what is measured is
the engine's overhead, not the data. 20 of its 30 models are 6-table joins (the fact joined to its 5
dimensions; 11 filters/projections and 9 GROUP BYs over the star), 10 more read those (aggregates,
filters, DISTINCT, UNION ALL, a window, a 2-table join).

Prints, all measured in this one run:
  compile time per model (deltapipe.incremental.compiler.compile_model, as compile_pipeline calls it):
      min / median / max and total, in the first deploy (pipeline.deploy into an empty catalog) against
      a second deploy of the unchanged pipeline (compiled programs reused: model.compile_key) and a
      deploy after the first run has built the models
  the size of each model's compiled refresh (delta_sql + state_sql + program), and its delta terms
  the wall time of a no-change `deltapipe run DIR --dsn DSN` through the real CLI in a subprocess (CLI
      start-up included; target: under 1 s), against `deltapipe --version` (bare CLI start-up) and the
      first, building run of the same pipeline, measured the same way

    .venv/bin/python benchmarks/compile.py [--fact 5000] [--repeat 5] [--no-breakdown] [--dsn DSN] [--profile FILE]

Then, to show where the time of a no-change run goes, 2 x --repeat more no-change runs in `python -c`
with wall-clock timers wrapped around the functions a run goes through (imports, pipeline.load, deploy,
the queue, the source and model nodes, load_file, every SQL statement's round trip; nothing in the
engine is changed) and the time from the command's end to the process's end (interpreter exit), every
other one with gc.freeze() called after the command (--no-breakdown skips them).

--profile FILE runs one more no-change `deltapipe run` under cProfile (saved to FILE) and prints the
functions taking the most cumulative time, to show where the time of a no-change run goes.

Without --dsn (or DELTAPIPE_DSN) a local server is started in /var/tmp/deltapipe-bench/pg.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from deltapipe import pipeline as pl  # noqa: E402
from deltapipe.incremental import compiler  # noqa: E402
from deltapipe.install import install  # noqa: E402
from deltapipe.server import LocalServer  # noqa: E402

SOURCES = [
    ("sales", "id", "id bigint, cust_id int, prod_id int, store_id int, day_id int, promo_id int, qty int, "
                    "price numeric(10,2)"),
    ("customer", "cust_id", "cust_id int, cname text, segment text, country text"),
    ("product", "prod_id", "prod_id int, pname text, category text, brand text"),
    ("store", "store_id", "store_id int, city text, region text"),
    ("calendar", "day_id", "day_id int, day date, month int, year int"),
    ("promo", "promo_id", "promo_id int, kind text, discount numeric(4,2)"),
]
SEGMENTS = ["retail", "wholesale", "online", "partner"]
CATEGORIES = ["books", "toys", "food", "garden", "tools"]
REGIONS = ["north", "south", "east", "west"]
KINDS = ["none", "coupon", "bundle", "clearance"]

STAR = """FROM sales s
JOIN customer c ON c.cust_id = s.cust_id
JOIN product p ON p.prod_id = s.prod_id
JOIN store st ON st.store_id = s.store_id
JOIN calendar d ON d.day_id = s.day_id
JOIN promo pr ON pr.promo_id = s.promo_id"""
WIDE_COLS = ("s.id, s.qty, s.price, s.qty * s.price AS revenue, c.cust_id, c.cname, c.segment, c.country, "
             "p.prod_id, p.category, p.brand, st.store_id, st.city, st.region, d.day, d.month, d.year, "
             "pr.kind, pr.discount")


JOINS: set[str] = set()  # the models that are 6-table joins (filled by models())


def models() -> dict[str, str]:
    m = {"sales_wide": "SELECT %s\n%s" % (WIDE_COLS, STAR)}
    filters = {
        "star_retail": "c.segment = 'retail'", "star_wholesale": "c.segment = 'wholesale'",
        "star_books": "p.category = 'books'", "star_toys": "p.category = 'toys'", "star_food": "p.category = 'food'",
        "star_north": "st.region = 'north'", "star_south": "st.region = 'south'",
        "star_2023": "d.year = 2023", "star_2024": "d.year = 2024 AND d.month <= 6",
        "star_promo": "pr.kind <> 'none' AND pr.discount > 0.10",
    }
    for name, cond in filters.items():
        m[name] = ("SELECT s.id, s.qty * s.price * (1 - pr.discount) AS net, c.segment, p.category, st.region, "
                   "d.day, pr.kind\n%s\nWHERE %s" % (STAR, cond))
    groups = {
        "rev_by_segment_month": "c.segment, d.year, d.month",
        "rev_by_category_region": "p.category, st.region",
        "rev_by_brand_year": "p.brand, d.year",
        "rev_by_country_kind": "c.country, pr.kind",
        "rev_by_city_month": "st.city, d.year, d.month",
        "units_by_product": "p.prod_id, p.category",
        "spend_by_customer": "c.cust_id, c.segment",
        "rev_by_store": "st.store_id, st.city, st.region",
        "rev_by_day_segment": "d.day, c.segment",
    }
    for name, g in groups.items():
        m[name] = ("SELECT %s, count(*) AS n, sum(s.qty) AS units, sum(s.qty * s.price) AS revenue, "
                   "avg(pr.discount) AS mean_discount\n%s\nGROUP BY %s" % (g, STAR, g))
    JOINS.update(m)
    m.update({
        "big_tickets": "SELECT id, cust_id, revenue, region FROM sales_wide WHERE revenue > 500",
        "wide_by_day": "SELECT day, count(*) AS n, sum(revenue) AS revenue, max(revenue) AS best "
                       "FROM sales_wide GROUP BY day",
        "brand_regions": "SELECT DISTINCT brand, region FROM sales_wide",
        "top_customers": "SELECT b.cust_id, c.cname, b.revenue FROM spend_by_customer b "
                         "JOIN customer c ON c.cust_id = b.cust_id WHERE b.revenue > 1000",
        "segment_totals": "SELECT segment, sum(revenue) AS revenue, sum(n) AS n FROM rev_by_segment_month "
                          "GROUP BY segment",
        "region_totals": "SELECT region, sum(revenue) AS revenue, count(*) AS categories FROM rev_by_category_region "
                         "GROUP BY region",
        "retail_by_category": "SELECT category, count(*) AS n, sum(net) AS net FROM star_retail GROUP BY category",
        "promo_kinds": "SELECT kind, count(*) AS n, sum(net) AS net FROM star_promo GROUP BY kind",
        "north_south": "SELECT id, net, region FROM star_north UNION ALL SELECT id, net, region FROM star_south",
        "customer_rank": "SELECT cust_id, segment, revenue, "
                         "row_number() OVER (PARTITION BY segment ORDER BY revenue DESC, cust_id) AS rank "
                         "FROM spend_by_customer",
    })
    assert len(m) == 30, len(m)
    return m


def write_pipeline(root: Path, n_fact: int) -> None:
    rnd = random.Random(5)
    (root / "models").mkdir(parents=True)
    toml = 'name = "star"\n'
    for ds, key, cols in SOURCES:
        toml += '[[sources]]\ndataset = "%s"\nfile = "%s.csv"\nkey = "%s"\nmode = "upsert"\ncolumns = "%s"\n' % (
            ds, ds, key, cols)
    (root / "pipeline.toml").write_text(toml)
    for n, sql in models().items():
        (root / "models" / (n + ".sql")).write_text(sql + "\n")
    n_cust, n_prod, n_store, n_day, n_promo = 300, 100, 20, 730, 8
    rows = {
        "customer": ["%d,C%d,%s,%s" % (k, k, SEGMENTS[k % 4], "c%02d" % (k % 12)) for k in range(1, n_cust + 1)],
        "product": ["%d,P%d,%s,b%02d" % (k, k, CATEGORIES[k % 5], k % 17) for k in range(1, n_prod + 1)],
        "store": ["%d,city%d,%s" % (k, k % 9, REGIONS[k % 4]) for k in range(1, n_store + 1)],
        "calendar": ["%d,%s,%d,%d" % (k, "%d-%02d-%02d" % (2023 + (k - 1) // 365, 1 + ((k - 1) % 365) // 31,
                                                         1 + (k - 1) % 28),
                                      1 + ((k - 1) % 365) // 31, 2023 + (k - 1) // 365) for k in range(1, n_day + 1)],
        "promo": ["%d,%s,%.2f" % (k, KINDS[k % 4], (k % 4) * 0.07) for k in range(1, n_promo + 1)],
        "sales": ["%d,%d,%d,%d,%d,%d,%d,%.2f" % (i, rnd.randint(1, n_cust), rnd.randint(1, n_prod),
                                                 rnd.randint(1, n_store), rnd.randint(1, n_day),
                                                 rnd.randint(1, n_promo), rnd.randint(1, 9), rnd.random() * 100)
                  for i in range(1, n_fact + 1)],
    }
    for ds, _key, cols in SOURCES:
        header = ",".join(c.split()[0] for c in cols.split(", "))
        (root / (ds + ".csv")).write_text(header + "\n" + "\n".join(rows[ds]) + "\n")


class CompileTimer:
    """Wraps compiler.compile_model (compile_pipeline imports it at call time) to time each call."""

    def __init__(self, p: pl.Pipeline):
        self.by_sql = {m.sql: m.name for m in p.models.values()}
        self.times: dict[str, float] = {}
        self.real = compiler.compile_model

    def __enter__(self):
        def timed(sql, *args, **kw):
            t = time.perf_counter()
            try:
                return self.real(sql, *args, **kw)
            finally:
                self.times[self.by_sql.get(sql, "?")] = time.perf_counter() - t
        compiler.compile_model = timed
        return self

    def __exit__(self, *exc):
        compiler.compile_model = self.real


def timed_deploy(dsn: str, root: Path) -> tuple[float, float, dict[str, float]]:
    """(seconds to read the pipeline directory, seconds to deploy it, compile seconds per compiled model)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        t = time.perf_counter()
        p = pl.load(str(root), conn)
        t_load = time.perf_counter() - t
        with CompileTimer(p) as ct:
            t = time.perf_counter()
            pl.deploy(conn, p)
            t_deploy = time.perf_counter() - t
    return t_load, t_deploy, ct.times


# `deltapipe run DIR --dsn DSN` in a fresh interpreter, as the console script runs it, with wall-clock timers
# wrapped around the functions a run goes through (nothing in the engine is changed); prints JSON on stderr
BREAKDOWN = r"""
import gc, json, os, sys, time
T0, W0 = time.perf_counter(), time.time()
acc = {}
def wrap(mod, name, label):
    f = getattr(mod, name)
    def w(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            d = acc.setdefault(label, [0, 0.0]); d[0] += 1; d[1] += time.perf_counter() - t
    setattr(mod, name, w)
import psycopg
t_psycopg = time.perf_counter() - T0
import sqlglot
t_sqlglot = time.perf_counter() - T0
from deltapipe.cli import main
t_import = time.perf_counter() - T0
from deltapipe import pipeline as pl
from deltapipe.pipeline import project, runner
deploy = sys.modules["deltapipe.pipeline.deploy"]
from deltapipe.load import loader
from deltapipe.cli import pipeline as clipl
WRAPS = [(psycopg, "connect", 1, "psycopg.connect (every connection the run opens)"),
         (pl, "load", 1, "pipeline.load (read the directory, parse the models)"),
         (project, "parse_model", 2, "project.parse_model (sqlglot: the tables a model reads)"),
         (pl, "deploy", 1, "pipeline.deploy"),
         (deploy, "compile_pipeline", 2, "deploy.compile_pipeline (programs reused, none compiled)"),
         (runner, "_work", 1, "runner._work (the queue: claim and run every node)"),
         (runner, "_run_source", 2, "runner._run_source (a source node)"),
         (loader, "load_file", 3, "loader.load_file (the file is skipped: same SHA-256)"),
         (loader, "_dead_runs", 4, "loader._dead_runs (clean-up of dead loads)"),
         (loader, "file_sha256", 4, "loader.file_sha256"),
         (runner, "_run_model", 2, "runner._run_model (a model node: deltapipe.run_node)"),
         (runner, "run_record", 1, "runner.run_record"),
         (clipl, "print_run", 1, "cli print_run")]
for mod, name, depth, label in WRAPS:
    wrap(mod, name, label)
sql = {}
real_execute = psycopg.Connection.execute
def execute(self, query, *a, **k):
    t = time.perf_counter()
    try:
        return real_execute(self, query, *a, **k)
    finally:
        key = " ".join(str(query).split())[:90]
        d = sql.setdefault(key, [0, 0.0]); d[0] += 1; d[1] += time.perf_counter() - t
psycopg.Connection.execute = execute
T1 = time.perf_counter()
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    T2 = time.perf_counter()
    if os.environ.get("DPBENCH_GC_FREEZE"):
        gc.freeze()  # (the objects left are not traversed again at interpreter exit)
    print(json.dumps({"started": W0, "ended": time.time(), "import_psycopg": t_psycopg, "import_sqlglot": t_sqlglot - t_psycopg,
                      "import_cli": t_import - t_sqlglot, "command": T2 - T1,
                      "phases": [[depth, label] + acc.get(label, [0, 0.0]) for _m, _n, depth, label in WRAPS],
                      "sql": sorted(([k, v[0], v[1]] for k, v in sql.items()), key=lambda x: -x[2])}),
          file=sys.stderr)
"""


def breakdown(root: Path, dsn: str, repeat: int) -> None:
    exe = Path(sys.executable)
    bare, walls, runs, frozen = [], [], [], []
    for i in range(2 * repeat):
        t = time.perf_counter()
        subprocess.run([str(exe), "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t)
        t, w = time.perf_counter(), time.time()
        # every other run calls gc.freeze() once the command is done, to show what the exit costs
        env = dict(os.environ, DPBENCH_GC_FREEZE="1") if i % 2 else None
        r = subprocess.run([str(exe), "-c", BREAKDOWN, "run", str(root), "--dsn", dsn], capture_output=True, text=True,
                           cwd=str(Path(__file__).resolve().parents[1] / "controller"), env=env)
        wall = time.perf_counter() - t
        w1 = time.time()
        if r.returncode != 0:
            raise SystemExit("breakdown run failed:\n%s%s" % (r.stdout, r.stderr))
        d = json.loads(r.stderr.strip().splitlines()[-1])
        d["to_first_line"] = d["started"] - w
        d["after_last_line"] = w1 - d["ended"]
        if i % 2:
            frozen.append(d["after_last_line"])
            continue
        walls.append(wall)
        runs.append(d)
    med = statistics.median
    print("\nwhere a no-change run's wall time goes (%d more runs with timers wrapped around the functions they go "
          "through; medians; wall %s):" % (repeat, ", ".join(ms(x) for x in walls)))
    print("  %-62s %9s" % ("process start to its first line (bare python -c pass: %s)" % ms(med(bare)),
                           ms(med(d["to_first_line"] for d in runs))))
    for k, label in (("import_psycopg", "import psycopg"), ("import_sqlglot", "import sqlglot"),
                     ("import_cli", "import deltapipe.cli (the rest: click, command modules)")):
        print("  %-62s %9s" % (label, ms(med(d[k] for d in runs))))
    print("  %-62s %9s" % ("the command (cli main: run)", ms(med(d["command"] for d in runs))))
    for i, (depth, label, n, _secs) in enumerate(runs[0]["phases"]):
        secs = med(d["phases"][i][3] for d in runs)
        print("  %-62s %9s  (%d call%s, %.1f ms each)" % ("  " * depth + label, ms(secs), n, "" if n == 1 else "s",
                                                          secs * 1000 / max(n, 1)))
    print("  %-62s %9s" % ("after the command: interpreter exit", ms(med(d["after_last_line"] for d in runs))))
    print("  %-62s %9s" % ("  (the same with gc.freeze() called after the command)", ms(med(frozen))))
    sql: dict[str, list] = {}
    for d in runs:
        for text, n, secs in d["sql"]:
            e = sql.setdefault(text, [0, 0.0])
            e[0] += n / len(runs)
            e[1] += secs / len(runs)
    top = sorted(sql.items(), key=lambda x: -x[1][1])
    print("  SQL statements by total time per run (round trip included, means; %d distinct, %d calls, %s in all):"
          % (len(sql), sum(v[0] for v in sql.values()), ms(sum(v[1] for v in sql.values()))))
    for text, (n, secs) in top[:15]:
        print("    %9s %4d x  %s" % (ms(secs), n, text))


def cli(args: list[str]) -> tuple[float, str]:
    exe = Path(sys.executable).parent / "deltapipe"
    t = time.perf_counter()
    r = subprocess.run([str(exe), *args], capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit("deltapipe %s failed (%d):\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return dt, r.stdout


def ms(x: float) -> str:
    return "%.0f ms" % (x * 1000) if x >= 0.0995 else "%.1f ms" % (x * 1000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fact", type=int, default=5000, help="rows of the fact table (dimensions: 1,158 rows)")
    ap.add_argument("--repeat", type=int, default=5, help="no-change runs and --version calls (medians printed)")
    ap.add_argument("--dsn", default=os.environ.get("DELTAPIPE_DSN"))
    ap.add_argument("--no-breakdown", dest="breakdown", action="store_false",
                    help="skip the no-change runs with timers around their phases and SQL statements")
    ap.add_argument("--profile", metavar="FILE", help="profile one more no-change run with cProfile into FILE")
    a = ap.parse_args()
    admin = a.dsn or LocalServer.at("/var/tmp/deltapipe-bench/pg").start()
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS dpbench_compile")
        c.execute("CREATE DATABASE dpbench_compile")
    dsn = admin.rsplit("/", 1)[0] + "/dpbench_compile"
    install(dsn)
    with tempfile.TemporaryDirectory(prefix="dpbench-compile-") as tmp:
        root = Path(tmp) / "star"
        write_pipeline(root, a.fact)
        n_models = len(models())

        # ---------------------------------------------------------------- (a) compile at deploy
        deploys = [("first deploy (empty catalog)",) + timed_deploy(dsn, root),
                   ("second deploy (unchanged pipeline)",) + timed_deploy(dsn, root)]
        first = deploys[0][3]
        print("pipeline: %d models (20 are 6-table joins) over 6 source datasets; fact %d rows, dimensions 1,158 rows"
              % (n_models, a.fact))
        for what, names in (("all", set(first)), ("6-table joins", JOINS), ("others", set(first) - JOINS)):
            vals = sorted(v for k, v in first.items() if k in names)
            print("compile time per model, first deploy, %-13s (%2d models): min %s, median %s, max %s; total %s"
                  % (what, len(vals), ms(vals[0]), ms(statistics.median(vals)), ms(vals[-1]), ms(sum(vals))))

        # ---------------------------------------------------------------- (b) the CLI, in a subprocess
        t_first, _ = cli(["run", str(root), "--dsn", dsn])
        deploys.append(("deploy after the first run",) + timed_deploy(dsn, root))
        for what, t_load, t_dep, times in deploys:
            print("%-36s read directory %s + deploy %s = %s; compile_model called for %d of %d models (%s)"
                  % (what, ms(t_load), ms(t_dep), ms(t_load + t_dep), len(times), n_models, ms(sum(times.values()))))
        nochange, versions = [], []
        with psycopg.connect(dsn, autocommit=True) as conn:
            for _ in range(a.repeat):  # (taken in turns, so that both see the same load of the machine)
                versions.append(cli(["--version"])[0])
                dt, _ = cli(["run", str(root), "--dsn", dsn])
                rid, secs, counts = conn.execute(
                    "SELECT r.id, extract(epoch FROM r.finished_at - r.started_at), "
                    "(SELECT string_agg(k || ' ' || v, ', ') FROM (SELECT status AS k, count(*) AS v FROM deltapipe.node_run "
                    " WHERE run_id = r.id GROUP BY status ORDER BY 1) x) "
                    "FROM deltapipe.run r WHERE r.pipeline = 'star' ORDER BY r.id DESC LIMIT 1").fetchone()
                nochange.append((dt, float(secs), counts))
            rows = conn.execute(
                "SELECT name, incremental, coalesce(shape, ''), coalesce(why_full, ''), "
                "coalesce(length(delta_sql), 0), coalesce(length(state_sql), 0), "
                "coalesce(length(program::text), 0), coalesce(delta_sql, '') || coalesce(program::text, '') "
                "FROM deltapipe.model WHERE pipeline = 'star' ORDER BY name").fetchall()
        t_version = statistics.median(versions)
        t_nc = statistics.median(x[0] for x in nochange)
        print("\nCLI wall times (subprocess, start-up included):")
        print("  deltapipe --version (bare CLI start-up)  median %s (%s)"
              % (ms(t_version), ", ".join(ms(x) for x in versions)))
        print("  first run (load 6 sources, build %d models)  %s" % (n_models, ms(t_first)))
        print("  no-change run  median %s = %.1f x --version, %.3f of the first run (target: under 1 s: %s)"
              % (ms(t_nc), t_nc / t_version, t_nc / t_first, "met" if t_nc < 1.0 else "MISS"))
        for dt, secs, counts in nochange:
            print("      %s wall, of which the run in the catalog (start_run .. finish) %s; nodes: %s"
                  % (ms(dt), ms(secs), counts))

        print("\ncompiled refresh per model: first-deploy compile time; bytes of delta_sql, state_sql and program "
              "JSON; TERMS: delta terms\n(one per join input: its change joined with the others), CHG: reads of "
              "an input's change table in all (term i also rebuilds\nthe old state of the i-1 inputs before it)")
        print("  %-24s %-4s %-10s %9s %8s %8s %8s %6s %4s" % ("MODEL", "INCR", "SHAPE", "COMPILE", "DELTA", "STATE",
                                                              "PROGRAM", "TERMS", "CHG"))
        total = 0
        for name, inc, shape, why, dl, sl, pg, text in rows:
            terms, chg = len(re.findall(r'_dp_d_\d+" AS', text)), len(re.findall(r"_dp_d_\d+", text))
            total += dl + sl + pg
            print("  %-24s %-4s %-10s %9s %8d %8d %8d %6d %4d%s" % (name, "yes" if inc else "no", shape,
                                                                    ms(first.get(name, 0.0)), dl, sl, pg, terms, chg,
                                                                    "  (%s)" % why if why else ""))
        for what, names in (("6-table joins", JOINS), ("others", set(first) - JOINS)):
            sizes = sorted(r[4] + r[5] + r[6] for r in rows if r[0] in names)
            print("  compiled SQL per model, %s (%d): min %d, median %d, max %d bytes"
                  % (what, len(sizes), sizes[0], statistics.median(sizes), sizes[-1]))
        print("  compiled SQL of the %d models: %d bytes" % (len(rows), total))

        if a.breakdown:
            breakdown(root, dsn, a.repeat)
        if a.profile:
            exe = Path(sys.executable).parent / "deltapipe"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cProfile", "-o", a.profile, str(exe), "run", str(root),
                            "--dsn", dsn], check=True, capture_output=True)
            print("\nprofiled no-change run (cProfile, %s wall with the profiler) saved to %s; top cumulative:"
                  % (ms(time.perf_counter() - t), a.profile))
            import pstats
            pstats.Stats(a.profile).sort_stats("cumulative").print_stats(35)


if __name__ == "__main__":
    main()
