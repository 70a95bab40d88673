"""`deltapipe demo`: the whole story on generated data, in a few seconds.

Two sources (customers, orders) and a pipeline of three models (a join, an aggregate, a mart) are
written into the demo's directory; the first run loads the files and builds the models; then the
orders file changes (updates, a delete, inserts and one bad row) and the second run loads only that
change and refreshes the models incrementally. The demo then shows what changed, the reject, a
rollback of the second run (every table back to its content after the first run) and writes the
HTML report of the incremental run.

It uses the library functions the CLI wraps (pipeline runner, changes, show_run, rollback,
write_report). It is re-runnable: it first removes what an earlier demo left (its pipeline
"demo", the datasets demo_customers and demo_orders, the schema demo).
"""

from __future__ import annotations

import json
import random
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

import psycopg
from psycopg import sql

from deltapipe.db import connect, require_installed, resolve_dsn
from deltapipe.errors import from_db

PIPELINE = "demo"
SCHEMA = "demo"
SOURCES = {"demo_customers": "customers", "demo_orders": "orders"}   # dataset -> table in schema demo
N_CUSTOMERS = 250
N_ORDERS = 5000

PIPELINE_TOML = '''# The deltapipe demo: two sources and three models, all in schema "demo".
name = "demo"
schema = "demo"

[[sources]]
dataset = "demo_customers"
table = "demo.customers"
file = "data/customers.csv"
key = "id"
columns = "id bigint, name text, country text, segment text"

[[sources]]
dataset = "demo_orders"
table = "demo.orders"
file = "data/orders.csv"
key = "id"
columns = "id bigint, customer_id bigint, amount numeric(10,2), day date"
'''

MODELS = {
    "order_lines": ("join", '''-- key: order_id
-- A join: each order with its customer's country and segment.
SELECT o.id AS order_id, o.customer_id, c.country, c.segment, o.amount, o.day
FROM orders o
JOIN customers c ON c.id = o.customer_id
'''),
    "customer_revenue": ("aggregate", '''-- key: customer_id
-- An aggregate: orders, revenue and last order day per customer.
SELECT customer_id, count(*) AS orders, sum(amount) AS revenue, max(day) AS last_order
FROM order_lines
GROUP BY customer_id
'''),
    "country_mart": ("mart", '''-- key: country
-- A mart: what a dashboard reads, revenue per country (the aggregate joined to the customers).
SELECT c.country, count(*) AS customers, sum(r.orders) AS orders, sum(r.revenue) AS revenue
FROM customer_revenue r
JOIN customers c ON c.id = r.customer_id
GROUP BY c.country
'''),
}

FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Dennis", "Margaret", "Linus",
         "Radia", "John", "Niklaus", "Sophie", "Tim", "Leslie", "Shafi", "Guido", "Bjarne"]
LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Ritchie", "Hamilton",
        "Torvalds", "Perlman", "McCarthy", "Wirth", "Wilson", "Berners-Lee", "Lamport", "Goldwasser", "van Rossum"]
COUNTRIES = ["UK", "US", "FR", "DE", "NL", "FI", "JP", "BR"]

# the change made to the orders file before the second run
UPDATED = (101, 1202, 2303, 3404, 4505)   # amount + 10.00
DELETED = 777
INSERTED = (N_ORDERS + 1, N_ORDERS + 2)
BAD = N_ORDERS + 3                        # amount "n/a": rejected, the rest of the file lands


def generate(seed: int = 19) -> tuple[list[tuple], list[tuple]]:
    """Deterministic customers (id, name, country, segment) and orders (id, customer_id, amount, day)."""
    rnd = random.Random(seed)
    customers = [(i, "%s %s" % (rnd.choice(FIRST), rnd.choice(LAST)), rnd.choice(COUNTRIES),
                  rnd.choice(("retail", "business"))) for i in range(1, N_CUSTOMERS + 1)]
    d0 = date(2024, 1, 1)
    orders = [(i, rnd.randint(1, N_CUSTOMERS), "%.2f" % (rnd.randint(500, 50000) / 100),
               (d0 + timedelta(days=rnd.randint(0, 180))).isoformat()) for i in range(1, N_ORDERS + 1)]
    return customers, orders


def changed_orders(orders: list[tuple]) -> list[tuple]:
    out = []
    for o in orders:
        if o[0] == DELETED:
            continue
        if o[0] in UPDATED:
            o = (o[0], o[1], "%.2f" % (float(o[2]) + 10), o[3])
        out.append(o)
    out += [(INSERTED[0], 7, "42.00", "2024-07-01"), (INSERTED[1], 8, "99.90", "2024-07-01"),
            (BAD, 9, "n/a", "2024-07-02")]
    return out


def _csv(header: str, rows: list[tuple]) -> str:
    return header + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows)


def write_pipeline(root: Path, customers: list[tuple], orders: list[tuple]) -> None:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(parents=True, exist_ok=True)
    for old in (root / "models").glob("*.sql"):
        if old.stem not in MODELS:
            old.unlink()   # a model file of an older demo would become a model
    (root / "pipeline.toml").write_text(PIPELINE_TOML)
    for name, (_, text) in MODELS.items():
        (root / "models" / (name + ".sql")).write_text(text)
    (root / "data" / "customers.csv").write_text(_csv("id,name,country,segment", customers))
    (root / "data" / "orders.csv").write_text(_csv("id,customer_id,amount,day", orders))


def reset(conn: psycopg.Connection) -> None:
    """Remove what an earlier demo left: its pipeline and models, their change logs, the datasets, schema demo."""
    with conn.transaction():
        for (m,) in conn.execute("SELECT name FROM deltapipe.model WHERE pipeline = %s", (PIPELINE,)).fetchall():
            for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'deltapipe_log' "
                                     "AND tablename LIKE %s", ("%s\\_\\_%s\\_%%" % (PIPELINE, m),)).fetchall():
                conn.execute(sql.SQL("DROP TABLE IF EXISTS deltapipe_log.{}").format(sql.Identifier(t)))
        conn.execute("DELETE FROM deltapipe.pipeline WHERE name = %s", (PIPELINE,))
        for ds in SOURCES:
            if conn.execute("SELECT 1 FROM deltapipe.dataset WHERE name = %s", (ds,)).fetchone():
                conn.execute("SELECT deltapipe.drop_dataset(%s, true)", (ds,))
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))


def _table_of(node: str) -> str:
    return "%s.%s" % (SCHEMA, SOURCES.get(node, node))


def _rows(conn, node: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
        sql.Identifier(SCHEMA), sql.Identifier(SOURCES.get(node, node)))).fetchone()[0]


def _content(conn, node: str) -> tuple[int, str]:
    """Row count and an md5 of the sorted visible rows (hidden _dp_ columns left out)."""
    table = SOURCES.get(node, node)
    cols = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "AND column_name NOT LIKE '\\_dp\\_%%' ORDER BY ordinal_position", (SCHEMA, table)).fetchall()]
    q = sql.SQL("SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) "
                "FROM (SELECT {} FROM {}.{}) r").format(sql.SQL(", ").join(map(sql.Identifier, cols)),
                                                        sql.Identifier(SCHEMA), sql.Identifier(table))
    n, h = conn.execute(q).fetchone()
    return n, h


def refresh_kind(n: dict) -> str:
    """How a node of a pipeline run was refreshed, in words."""
    if n["status"] == "skipped":
        if n["node_kind"] != "model" and "unchanged" in (n.get("skip_reason") or ""):
            return "skipped (same file as last time)"
        return "skipped (%s)" % (n.get("skip_reason") or "nothing changed")
    if n["status"] != "done":
        return n["status"]
    if n["node_kind"] != "model":
        return "loaded"
    if (n.get("strategy") or "") == "incremental":
        return "incremental"
    return "full%s" % (" (%s)" % n["full_because"] if n.get("full_because") else "")


def _show_run(conn, run: dict, echo) -> None:
    secs = (run["finished_at"] - run["started_at"]).total_seconds() if run.get("finished_at") else 0.0
    echo("   run %d %s in %.2fs" % (run["id"], run["status"], secs))
    echo("   %-18s %-34s %9s %10s" % ("NODE", "REFRESH", "WRITTEN", "TABLE ROWS"))
    order = {n: i for i, n in enumerate(list(SOURCES) + list(MODELS))}
    for n in sorted(run["nodes"], key=lambda x: order.get(x["node"], 99)):
        written = (n["inserted"] or 0) + (n["updated"] or 0) + (n["deleted"] or 0)
        kind = refresh_kind(n)
        echo("   %-18s %-34s %9d %10d%s" % (n["node"], kind[:34], written, _rows(conn, n["node"]),
                                            "   (+%d ~%d -%d)" % (n["inserted"], n["updated"], n["deleted"])
                                            if written else ""))


def _short(obj) -> str:
    if obj is None:
        return "-"
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if not k.startswith("_dp_")}
    return json.dumps(obj, default=str, ensure_ascii=False)


def _show_changes(dsn, name: str, run_id: int, echo, pipeline: str | None = None, limit: int = 10) -> None:
    from deltapipe.ops.runs import changes
    r = changes(dsn, name, run_id, pipeline, limit)
    what = "model %s.%s" % (r["pipeline"], name) if r["kind"] == "model" else "dataset %s" % name
    echo("   %s: %d change%s in run %d%s" % (what, r["total"], "" if r["total"] == 1 else "s", run_id,
                                           ", the newest %d:" % limit if r["total"] > limit else ""))
    for c in r["rows"]:
        b, a = c["before"] or {}, c["after"] or {}
        if c["op"] == "U":
            what = ", ".join("%s %s -> %s" % (k, _short(b.get(k)), _short(a.get(k))) for k in sorted(set(b) | set(a))
                             if not k.startswith("_dp_") and b.get(k) != a.get(k))
        else:
            what = ("inserted " if c["op"] == "I" else "deleted, was ") + _short(a if c["op"] == "I" else b)
        echo("     %s %-18s %s" % (c["op"], _short(c["key"]), what))


def run_demo(dsn: str | None, workdir: str, echo: Callable[[str], None] = print, show_load=None) -> dict:
    """Run the story; returns {"runs": [first, second], "report": path, "seconds": total}. ``show_load`` is unused
    (kept for callers of the former demo)."""
    from deltapipe.ops.report import write_report
    from deltapipe.ops.runs import rollback, show_run
    from deltapipe.pipeline.runner import run as run_pipeline

    t0 = time.monotonic()
    real = resolve_dsn(dsn)
    work = Path(workdir).resolve()
    root = work / "shop"
    conn = connect(real, autocommit=True, application_name="deltapipe demo")
    try:
        require_installed(conn)
        reset(conn)
        customers, orders = generate()
        write_pipeline(root, customers, orders)

        echo("deltapipe demo: two source files, a pipeline of three models, a changed file, a rollback.")
        echo("Work directory: %s" % work)

        echo("\n== 1. Sources: two CSV files, loaded into datasets (tables in schema %s)" % SCHEMA)
        echo("   %-22s %5d customers  (id, name, country, segment)  -> dataset demo_customers"
             % ("shop/data/customers.csv", len(customers)))
        echo("   %-22s %5d orders     (id, customer_id, amount, day) -> dataset demo_orders"
             % ("shop/data/orders.csv", len(orders)))

        echo("\n== 2. A pipeline of three models: shop/pipeline.toml and shop/models/*.sql, one SELECT each")
        for name, (what, text) in MODELS.items():
            echo("   models/%s.sql (%s):" % (name, what))
            for ln in text.splitlines():
                if ln.strip() and not ln.startswith("--"):
                    echo("       " + ln)

        echo("\n== 3. First run: load both files, build every model (deltapipe run shop)")
        r1 = run_pipeline(real, str(root))
        maint = conn.execute("SELECT name, incremental, shape, why_full FROM deltapipe.model WHERE pipeline = %s",
                             (PIPELINE,)).fetchall()
        _show_run(conn, r1, echo)
        echo("   how each model will be maintained (deltapipe plan shop):")
        for name, inc, shape, why in sorted(maint, key=lambda m: list(MODELS).index(m[0])):
            echo("     %-17s %s" % (name, "incremental (%s)" % shape if inc else "full: %s" % why))
        before = {n: _content(conn, n) for n in list(SOURCES) + list(MODELS)}

        echo("\n== 4. The orders file changes")
        v2 = changed_orders(orders)
        (root / "data" / "orders.csv").write_text(_csv("id,customer_id,amount,day", v2))
        echo("   shop/data/orders.csv: %d amounts updated (orders %s)," % (len(UPDATED), ", ".join(map(str, UPDATED))))
        echo("   order %d deleted, orders %d and %d added, and one bad row: order %d with amount \"n/a\"."
             % (DELETED, INSERTED[0], INSERTED[1], BAD))
        echo("   shop/data/customers.csv is unchanged.")

        echo("\n== 5. Second run: only the change is loaded, and each model is refreshed from its inputs' changes")
        r2 = run_pipeline(real, str(root))
        _show_run(conn, r2, echo)
        echo("   WRITTEN is what the run changed in the table; TABLE ROWS its size: a few rows of thousands.")
        load_runs = {n["node"]: (n.get("phases") or {}).get("load_runs") or [] for n in r2["nodes"]
                     if n["node_kind"] != "model"}
        orders_run = load_runs["demo_orders"][-1]

        echo("\n== 6. What changed (deltapipe changes demo_orders --run %d; deltapipe changes country_mart --run %d)"
             % (orders_run, r2["id"]))
        _show_changes(real, "demo_orders", orders_run, echo)
        _show_changes(real, "country_mart", r2["id"], echo, pipeline=PIPELINE)

        echo("\n== 7. The bad row went to deltapipe.reject, the rest of the file landed (deltapipe runs show %d)"
             % orders_run)
        rej = show_run(real, orders_run)
        for j in rej["rejects"]:
            echo("   reject: line %s  column %s  %s  %s" % (j["line_no"], j["column_name"] or "-", j["sqlstate"],
                                                           j["message"]))
            echo("           | %s" % (j["raw_line"] or "").rstrip("\n"))

        echo("\n== 8. Roll back the second run (deltapipe rollback %d --cascade)" % r2["id"])
        after2 = {n: _content(conn, n) for n in list(SOURCES) + list(MODELS)}
        rb = rollback(real, r2["id"], cascade=True)
        for c in rb.get("cascaded") or []:
            echo("   rolled back run %s first (a source load of the pipeline run is a run of its own)" % c)
        for n in rb.get("restored") or []:
            if n["strategy"] != "create" and not n["rows"]:
                continue  # restored by a cascaded rollback above
            echo("   %s: %s" % (n["table"], "dropped (the run created it)" if n["strategy"] == "create"
                                else "%d rows restored" % n["rows"]))
        after_rb = {n: _content(conn, n) for n in list(SOURCES) + list(MODELS)}
        echo("   %-22s %12s %12s %15s  %s" % ("TABLE", "AFTER RUN 1", "AFTER RUN 2", "AFTER ROLLBACK",
                                              "CONTENT AS AFTER RUN 1"))
        for n in list(SOURCES) + list(MODELS):
            echo("   %-22s %7d rows %7d rows %10d rows  %s" % (
                _table_of(n), before[n][0], after2[n][0], after_rb[n][0],
                "yes" if after_rb[n] == before[n] else "NO"))
        same = all(after_rb[n] == before[n] for n in before)
        echo("   every table is back to its content after the first run: %s" % ("yes" if same else "NO"))

        echo("\n== 9. HTML report of the incremental run (deltapipe report %d -o report.html)" % r2["id"])
        rep = write_report(real, r2["id"], work / "report.html")
        echo("   wrote %s (%d nodes, %d bytes): open it in a browser" % (rep["file"], rep["nodes"], rep["bytes"]))

        secs = time.monotonic() - t0
        echo("\nDone in %.1fs. Try: deltapipe runs; deltapipe runs show %d; deltapipe plan %s;" % (secs, r2["id"], root))
        echo("     deltapipe dag %s; psql %s -c 'table demo.country_mart'" % (root, real))
        return {"runs": [r1["id"], r2["id"]], "orders_load_run": orders_run, "report": rep["file"],
                "restored": same, "seconds": secs}
    except psycopg.Error as e:
        raise from_db(e) from e
    finally:
        conn.close()
