"""Incremental refresh of a jaffle_shop-shaped DAG, as dbt users write it: raw customers, orders and
payments loaded with `deltapipe load` (datasets the pipeline does not declare), staging models
`with source as (select * from raw_x), renamed as (...) select * from renamed`, and the two marts
exactly as jaffle_shop writes them (CTE chains that aggregate, then LEFT JOIN the aggregates; no
key headers: keys are inferred).

Prints, measured in this one run on the same DAG and data: the node time of an incremental refresh
after a 1% change of the orders and payments (new amounts and statuses, orders moving to other
customers) against a full refresh (`{"full_refresh": true}`) after another change of the same size
(target <= 0.10), per node, and deltapipe.verify's verdict.

    .venv/bin/python benchmarks/jaffle.py [--orders 1000000] [--dsn DSN]

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

from deltapipe.install import install  # noqa: E402
from deltapipe.load.datasets import create as create_dataset  # noqa: E402
from deltapipe.load.loader import LoadOptions, load_file  # noqa: E402
from deltapipe.pipeline import runner  # noqa: E402
from deltapipe.server import LocalServer  # noqa: E402

MODELS = {
    "stg_customers": """with source as (select * from raw_customers),
renamed as (select id as customer_id, first_name, last_name from source)
select * from renamed""",
    "stg_orders": """with source as (select * from raw_orders),
renamed as (select id as order_id, user_id as customer_id, order_date, status from source)
select * from renamed""",
    "stg_payments": """with source as (select * from raw_payments),
renamed as (select id as payment_id, order_id, payment_method, amount / 100.0 as amount from source)
select * from renamed""",
    "customers": """with customers as (select * from stg_customers),
orders as (select * from stg_orders),
payments as (select * from stg_payments),
customer_orders as (
    select customer_id, min(order_date) as first_order, max(order_date) as most_recent_order,
           count(order_id) as number_of_orders
    from orders group by customer_id
),
customer_payments as (
    select orders.customer_id, sum(amount) as total_amount
    from payments
    left join orders on payments.order_id = orders.order_id
    group by orders.customer_id
),
final as (
    select customers.customer_id, customers.first_name, customers.last_name,
           customer_orders.first_order, customer_orders.most_recent_order, customer_orders.number_of_orders,
           customer_payments.total_amount as customer_lifetime_value
    from customers
    left join customer_orders on customers.customer_id = customer_orders.customer_id
    left join customer_payments on customers.customer_id = customer_payments.customer_id
)
select * from final""",
    "orders": """with orders as (select * from stg_orders),
payments as (select * from stg_payments),
order_payments as (
    select order_id,
           sum(case when payment_method = 'credit_card' then amount else 0 end) as credit_card_amount,
           sum(case when payment_method = 'coupon' then amount else 0 end) as coupon_amount,
           sum(case when payment_method = 'bank_transfer' then amount else 0 end) as bank_transfer_amount,
           sum(case when payment_method = 'gift_card' then amount else 0 end) as gift_card_amount,
           sum(amount) as total_amount
    from payments group by order_id
),
final as (
    select orders.order_id, orders.customer_id, orders.order_date, orders.status,
           order_payments.credit_card_amount, order_payments.coupon_amount,
           order_payments.bank_transfer_amount, order_payments.gift_card_amount,
           order_payments.total_amount as amount
    from orders
    left join order_payments on orders.order_id = order_payments.order_id
)
select * from final""",
}
STATUSES = ["placed", "shipped", "completed", "return_pending", "returned"]
METHODS = ["credit_card", "coupon", "bank_transfer", "gift_card"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--dsn", default=os.environ.get("DELTAPIPE_DSN"))
    a = ap.parse_args()
    n_orders = a.orders
    n_customers = max(100, n_orders // 10)
    admin = a.dsn or LocalServer.at("/var/tmp/deltapipe-bench/pg").start()
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS dpbench_jaffle")
        c.execute("CREATE DATABASE dpbench_jaffle")
    dsn = admin.rsplit("/", 1)[0] + "/dpbench_jaffle"
    install(dsn)
    rnd = random.Random(7)
    cust_of = [0] * (n_orders + 1)      # order -> customer, as loaded
    order_of: list[int] = [0]           # payment -> order, as loaded

    def order_line(i, move=True):
        if move or not cust_of[i]:
            cust_of[i] = rnd.randrange(1, n_customers + 1)
        return "%d,%d,2024-%02d-%02d,%s\n" % (i, cust_of[i], rnd.randrange(1, 13), rnd.randrange(1, 29),
                                              rnd.choice(STATUSES))

    def pay_line(p, o):
        if p < len(order_of):
            order_of[p] = o
        else:
            order_of.append(o)
        return "%d,%d,%s,%d\n" % (p, o, rnd.choice(METHODS), rnd.randrange(100, 5000))

    with tempfile.TemporaryDirectory(prefix="dpbench-jaffle-") as tmp:
        tmp = Path(tmp)
        with open(tmp / "customers.csv", "w") as f:
            f.write("id,first_name,last_name\n")
            for k in range(1, n_customers + 1):
                f.write("%d,F%d,L%d\n" % (k, k % 997, k % 1009))
        with open(tmp / "orders.csv", "w") as f, open(tmp / "payments.csv", "w") as g:
            f.write("id,user_id,order_date,status\n")
            g.write("id,order_id,payment_method,amount\n")
            p = 0
            for i in range(1, n_orders + 1):
                f.write(order_line(i))
                for _ in range(1 + (i % 3 == 0)):
                    p += 1
                    g.write(pay_line(p, i))
        n_pay = p
        for name, cols, path in (("raw_customers", "id bigint, first_name text, last_name text", "customers.csv"),
                                 ("raw_orders", "id bigint, user_id bigint, order_date date, status text", "orders.csv"),
                                 ("raw_payments", "id bigint, order_id bigint, payment_method text, amount bigint",
                                  "payments.csv")):
            create_dataset(dsn, name, ["id"], columns=cols)
            load_file(dsn, name, tmp / path, LoadOptions(mode="upsert"), progress=False, trigger="cli")
        root = tmp / "jaffle"
        (root / "models").mkdir(parents=True)
        (root / "pipeline.toml").write_text('name = "jaffle"\n')
        for n, sql in MODELS.items():
            (root / "models" / (n + ".sql")).write_text(sql)
        t0 = time.perf_counter()
        r = runner.run(dsn, str(root), workers=1)
        assert r["status"] == "done", r
        print("setup: %d customers, %d orders, %d payments loaded with `deltapipe load`; first run %.1fs"
              % (n_customers, n_orders, n_pay, time.perf_counter() - t0))
        conn = psycopg.connect(dsn, autocommit=True)
        for m, inc, shape, why in conn.execute("SELECT name, incremental, shape, why_full FROM deltapipe.model "
                                               "ORDER BY name").fetchall():
            print("    plan %-14s %s" % (m, ("incremental (%s)" % shape) if inc else "full: %s" % why))
        batch = [0]

        def change(share: float) -> int:
            """share of the orders change (status, date; a tenth of them move to another customer), and as
            many payments (method, amount; a tenth move to another order)."""
            batch[0] += 1
            n = max(1, int(n_orders * share))
            po, pp = tmp / ("o_%d.csv" % batch[0]), tmp / ("p_%d.csv" % batch[0])
            with open(po, "w") as f:
                f.write("id,user_id,order_date,status\n")
                for i in rnd.sample(range(1, n_orders + 1), n):
                    f.write(order_line(i, move=rnd.random() < 0.1))
            with open(pp, "w") as f:
                f.write("id,order_id,payment_method,amount\n")
                for q in rnd.sample(range(1, n_pay + 1), n):
                    f.write(pay_line(q, rnd.randrange(1, n_orders + 1) if rnd.random() < 0.1 else order_of[q]))
            d = 0
            for ds, path in (("raw_orders", po), ("raw_payments", pp)):
                res = load_file(dsn, ds, path, LoadOptions(mode="upsert"), progress=False, trigger="cli")
                d += res["inserted"] + res["updated"] + res["deleted"]
            return d

        def refresh(full: bool) -> tuple[float, int]:
            conn.execute("CHECKPOINT")
            t = time.perf_counter()
            run_id = conn.execute("CALL deltapipe.run_pipeline('jaffle', 'sql', %s, NULL)",
                                  ('{"full_refresh": %s}' % ("true" if full else "false"),)).fetchone()[0]
            dt = time.perf_counter() - t
            st = conn.execute("SELECT status FROM deltapipe.run WHERE id = %s", (run_id,)).fetchone()[0]
            assert st == "done", st
            return dt, run_id

        change(0.01)
        t_warm, _ = refresh(False)   # warm-up: the first refresh after the build
        d_inc = change(0.01)
        t_inc, rid = refresh(False)
        change(0.01)
        t_full, rid_full = refresh(True)
        bad = conn.execute("SELECT count(*) FROM deltapipe.verify('jaffle')").fetchone()[0]
        print("warm-up (first incremental refresh after the build): %.3fs" % t_warm)
        print("1%% change (%d source rows): incremental %.3fs, full %.3fs, incremental / full = %.3f (target <= 0.10)"
              % (d_inc, t_inc, t_full, t_inc / t_full))
        full_ms = dict(conn.execute("SELECT node, round(extract(epoch FROM finished_at - started_at) * 1000) "
                                    "FROM deltapipe.node_run WHERE run_id = %s", (rid_full,)).fetchall())
        for node, strat, ins, upd, dele, why, ms in conn.execute(
                "SELECT node, strategy, inserted, updated, deleted, full_because, "
                "round(extract(epoch FROM finished_at - started_at) * 1000) FROM deltapipe.node_run "
                "WHERE run_id = %s ORDER BY id", (rid,)).fetchall():
            print("    %-14s %-12s %6d ms (full %6d ms)  rows written %7d%s"
                  % (node, strat, ms, full_ms.get(node, 0), ins + upd + dele, "  (%s)" % why if why else ""))
        print("verify: %s" % ("all models equal their full recompute" if bad == 0 else "%d mismatching rows" % bad))
        conn.close()


if __name__ == "__main__":
    main()
