"""The affected-key rule: models no z-set template covers (outer joins of aggregates, nested
aggregates, GROUP BY with columns that depend on the key, windows partitioned by the key, the
row_number() = 1 dedupe) refresh from the keys their inputs' changes touch. Property: after every
run each model equals a full recompute as a multiset, over random batches with NULLs, duplicates,
key updates, both join sides changing and emptied groups. Real PostgreSQL, deltapipe's load path."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_helpers import make_pipeline
from test_incremental import csv, mismatches, node_strategies

SOURCES = ('[[sources]]\ndataset = "orders"\nfile = "data/orders.csv"\nkey = "id"\nmode = "changes"\n'
           'op_column = "op"\ncolumns = "id bigint, customer text, amount numeric, day date"\n'
           '[[sources]]\ndataset = "customers"\nfile = "data/customers.csv"\nkey = "name"\nmode = "changes"\n'
           'op_column = "op"\ncolumns = "name text, region text"\n'
           '[[sources]]\ndataset = "payments"\nfile = "data/payments.csv"\nkey = "pid"\nmode = "changes"\n'
           'op_column = "op"\ncolumns = "pid bigint, order_id bigint, method text, amount numeric"\n')

MODELS = {
    # dbt's jaffle_shop customers mart: aggregates LEFT JOINed to the customers; payments reach a
    # customer through their order (semi-join); no key header: customers' key is inferred
    "cust_mart": """with c as (select * from customers),
o as (select * from orders),
p as (select * from payments),
co as (select customer, count(*) as n_orders, min(amount) as low, max(day) as last_day from o group by customer),
cp as (select o.customer, sum(p.amount) as paid, count(p.pid) as n_pay
       from p left join o on p.order_id = o.id group by o.customer),
final as (select c.name, c.region, co.n_orders, co.low, co.last_day, cp.paid, cp.n_pay
          from c left join co on c.name = co.customer left join cp on c.name = cp.customer)
select * from final""",
    # jaffle's orders mart: payments pivoted per order, LEFT JOINed to the orders
    "order_mart": """with op as (select order_id,
       sum(case when method = 'card' then amount else 0 end) as card_amount,
       sum(amount) as total, count(*) as n
  from payments group by order_id)
select o.id, o.customer, op.card_amount, op.total, coalesce(op.n, 0) as n_pay
from orders o left join op on o.id = op.order_id""",
    # GROUP BY carries a column that depends on the key (the scaffold's customer_totals)
    "fd_totals": """-- key: customer
select o.customer, c.region, count(*) as n, sum(o.amount) as s
from orders o join customers c on c.name = o.customer
group by o.customer, c.region""",
    # the dedupe idiom: the payment with the largest amount per order
    "top_payment": """-- key: order_id
select order_id, pid, amount from (
  select p.order_id, p.pid, p.amount,
         row_number() over (partition by p.order_id order by p.amount desc nulls last, p.pid) as rn
  from payments p where p.order_id is not null) x
where rn = 1""",
    # running sums per customer (windows partitioned by the first key column)
    "running": """-- key: customer, id
select customer, id, amount, sum(amount) over (partition by customer order by id) as running,
       rank() over (partition by customer order by amount nulls last) as rk
from orders where customer is not null""",
    # a nested aggregate joined back (an aggregate of the orders of each customer, then filtered)
    "nested": """select c.name, x.n, x.total from customers c
join (select customer, count(*) as n, sum(amount) as total from orders group by customer having count(*) > 1) x
  on x.customer = c.name""",
    # RIGHT/FULL joins keyed by the preserved side
    "right_side": """-- key: id
select o.id, c.region from customers c right join orders o on o.customer = c.name""",
    # an anti-join written as LEFT JOIN ... IS NULL
    "orphans": """select o.id, o.customer from orders o left join customers c on c.name = o.customer where c.name is null""",
    # semi- and anti-joins as subqueries correlated to the key, IN (SELECT ...) through another column,
    # scalar subqueries in SELECT
    "paid": """select o.id, o.amount from orders o where exists (select 1 from payments p where p.order_id = o.id)""",
    "unpaid": """select o.id, o.amount from orders o
where not exists (select 1 from payments p where p.order_id = o.id and p.amount > 0)""",
    "north_orders": """select o.id, o.customer from orders o
where o.customer in (select c.name from customers c where c.region = 'north')""",
    "pay_stats": """select o.id, (select count(*) from payments p where p.order_id = o.id) as n,
       (select sum(p.amount) from payments p where p.order_id = o.id) as total from orders o""",
    "busy_customers": """select c.name, c.region from customers c
where exists (select 1 from orders o where o.customer = c.name and o.amount > 3)""",
    # a chain of joins on other columns than the key: payments reach a region through their order
    # and its customer (key inferred: GROUP BY a column filtered NOT NULL)
    "region_paid": """select c.region, sum(p.amount) as paid, count(*) as n
from customers c join orders o on o.customer = c.name join payments p on p.order_id = o.id
where c.region is not null group by c.region""",
    # no key (the restricting column may be NULL): rows of the affected values compared whole
    "paid_per_customer": """select o.customer, count(*) as n, sum(o.amount) as total from orders o
where exists (select 1 from payments p where p.order_id = o.id) group by o.customer""",
    "regions_and_customers": """select c.region from customers c union select o.customer from orders o""",
    # INTERSECT / EXCEPT (distinct), keyed and not, with NULLs on either side: per-row counts on each side
    "customers_who_ordered": """select c.name from customers c intersect select o.customer from orders o""",
    "idle_customers": """-- key: name
select c.name from customers c except select o.customer from orders o""",
    "amount_pairs": """select o.customer, o.amount from orders o where o.amount > 2
except select o.customer, p.amount from orders o join payments p on p.order_id = o.id""",
    "method_customers": """select p.method, o.customer from payments p join orders o on o.id = p.order_id
intersect select p.method, c.name from payments p, customers c where c.region = 'north'""",
    # EXISTS (... LIMIT 1), as people write it: the LIMIT does not change whether a row exists
    "paid_once": """select o.id, o.customer from orders o
where exists (select 1 from payments p where p.order_id = o.id and p.amount > 1 limit 1)""",
    # NOT IN with NULLs on its inner side (its subquery split into the distinct values it reads)
    "not_paid": """select o.id, o.amount from orders o where o.amount not in (select p.amount from payments p)""",
    "customer_shares": """select customer, amount, sum(amount) over (partition by customer) as total,
       count(*) over (partition by customer) as n from orders""",
    "methods_per_customer": """select o.customer, count(distinct p.method) as methods
from orders o join payments p on p.order_id = o.id group by o.customer""",
    # the dedupe rule: the first row per key by an order; row_number() = 1 over a filter, and as a dbt CTE over
    # a join ordered by a column the model does not show (a key's row leaving, rows added before and after it,
    # a key emptied)
    "latest_order": """-- key: customer
select customer, id, amount from (
  select o.id, o.customer, o.amount,
         row_number() over (partition by o.customer order by o.amount desc nulls last, o.id) as rn
  from orders o where o.customer is not null) x
where rn = 1""",
    "latest_payment": """-- key: order_id
with ranked as (
  select p.order_id, p.pid, p.amount, o.customer, row_number() over (partition by p.order_id order by p.pid desc) as rn
  from payments p join orders o on o.id = p.order_id)
select order_id, amount, customer from ranked where rn = 1""",
    # DISTINCT ON, unqualified
    "first_payment": """-- key: order_id
select distinct on (order_id) order_id, pid, amount from payments where order_id is not null
order by order_id, pid""",
}
INCREMENTAL = set(MODELS)

NAMES = ["c0", "c1", "c2", "c3"]
order_op = st.tuples(st.sampled_from(["insert", "update", "upsert", "delete"]), st.integers(1, 10),
                     st.sampled_from(NAMES + [None]), st.one_of(st.none(), st.integers(0, 9)))
cust_op = st.tuples(st.sampled_from(["upsert", "delete"]), st.sampled_from(NAMES),
                    st.sampled_from(["north", "south", None]))
pay_op = st.tuples(st.sampled_from(["upsert", "delete"]), st.integers(1, 10), st.one_of(st.none(), st.integers(1, 10)),
                   st.sampled_from(["card", "cash", None]), st.one_of(st.none(), st.integers(0, 5)))
batches = st.lists(st.tuples(st.lists(order_op, max_size=6), st.lists(cust_op, max_size=3), st.lists(pay_op, max_size=5)),
                   min_size=1, max_size=4)
EXAMPLES = int(os.environ.get("DELTAPIPE_HYPOTHESIS_EXAMPLES", "8"))


def _write(d, orders, customers, payments):
    (d / "data/orders.csv").write_text(csv(
        [(op, i, c, a, "2024-01-0%d" % (1 + (a or 0) % 3)) if op != "delete" else (op, i, None, None, None)
         for op, i, c, a in orders], "op,id,customer,amount,day"))
    (d / "data/customers.csv").write_text(csv(
        [(op, n, r) if op != "delete" else (op, n, None) for op, n, r in customers], "op,name,region"))
    (d / "data/payments.csv").write_text(csv(
        [(op, p, o, m, a) if op != "delete" else (op, p, None, None, None) for op, p, o, m, a in payments],
        "op,pid,order_id,method,amount"))


def _pipeline(tmp_path):
    d = make_pipeline(tmp_path / "p", MODELS, sources=SOURCES, data={"data/x": ""})
    _write(d, [("insert", i, NAMES[i % 4], i % 7) for i in range(1, 9)],
           [("upsert", n, "north" if k % 2 else None) for k, n in enumerate(NAMES)],
           [("upsert", p, 1 + p % 6, "card" if p % 2 else "cash", p % 4) for p in range(1, 8)])
    return d


def test_plan_classifies_the_shapes(cli, tmp_path):
    d = _pipeline(tmp_path)
    r = cli("plan", d)
    assert r.exit_code == 0, r.output
    out = r.output
    for m in MODELS:
        line = next(ln for ln in out.splitlines() if " %s " % m in ln)
        nxt = out.splitlines()[out.splitlines().index(line) + 1]
        assert "refresh: incremental" in nxt, (m, nxt)
    assert "refresh: incremental (affected keys on name)" in out
    assert "key: name (inferred)" in out
    assert "FROM p: semi-joined to o on p.order_id = o.id" in out


def test_affected_key_models_equal_full_recompute_after_random_batches(cli, conn, tmp_path):
    d = _pipeline(tmp_path)
    r = cli("run", d, "--no-timeline")
    assert r.exit_code == 0, r.output
    assert mismatches(conn) == []
    seen: set = set()

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(batches)
    def prop(bs):
        for orders, customers, payments in bs:
            _write(d, orders, customers, payments)
            r = cli("run", d, "--no-timeline", "--incremental-threshold", "1")
            assert r.exit_code == 0, r.output
            for n, (_status, strategy, why) in node_strategies(conn).items():
                if n in MODELS and strategy == "incremental":
                    seen.add(n)
                if n in MODELS and strategy not in ("incremental", None):
                    assert why is not None, (n, strategy)
            bad = mismatches(conn)
            assert bad == [], bad
    prop()
    assert INCREMENTAL <= seen, seen


def test_emptied_group_and_moved_key(cli, conn, tmp_path):
    """An order moves to another customer (both customers' rows change), a customer's last order
    goes (its aggregates become NULL through the LEFT JOIN), a customer is deleted and comes back."""
    d = _pipeline(tmp_path)
    assert cli("run", d, "--no-timeline").exit_code == 0
    _write(d, [("update", 1, "c3", 5), ("delete", 4, None, None), ("delete", 8, None, None)],
           [("delete", "c1", None)], [("upsert", 3, 1, "card", 9)])
    assert cli("run", d, "--no-timeline", "--incremental-threshold", "1").exit_code == 0
    st_ = node_strategies(conn)
    assert st_["cust_mart"][1] == "incremental" and st_["order_mart"][1] == "incremental", st_
    assert mismatches(conn) == []
    rows = dict(conn.execute("SELECT name, n_orders FROM cust_mart").fetchall())
    assert "c1" not in rows and rows["c0"] is None  # c0's orders (4, 8) are gone: NULL through the LEFT JOIN
    _write(d, [], [("upsert", "c1", "south")], [])
    assert cli("run", d, "--no-timeline", "--incremental-threshold", "1").exit_code == 0
    assert mismatches(conn) == []
    assert conn.execute("SELECT region FROM cust_mart WHERE name = 'c1'").fetchone() == ("south",)
