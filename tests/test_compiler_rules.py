"""The incremental compiler's classification of single models (no database): which rule maintains a
model, the key it infers, and the construct it names when it cannot. The property tests
(test_incremental_props.py, test_incremental_keys.py) check that the rules give the right result."""

from __future__ import annotations

import pytest

from deltapipe.incremental.compiler import compile_model

TABLES = {("", "orders"): ("orders", "source", '"public"."orders"'),
          ("", "customers"): ("customers", "source", '"public"."customers"'),
          ("", "payments"): ("payments", "source", '"public"."payments"'),
          ("", "ext"): ("ext", "external", "ext")}
COLUMNS = {"orders": ["id", "customer", "amount", "day"], "customers": ["name", "region"],
           "payments": ["pid", "order_id", "method", "amount"]}
KEYS = {"orders": ["id"], "customers": ["name"], "payments": ["pid"]}


def compile_(sql, key=None):
    tables = {k: v for k, v in TABLES.items() if k[1] in sql}
    return compile_model(sql, tables, COLUMNS, keys=KEYS, declared_key=key)


CASES = [
    # (sql, declared key, expected "shape" or "full: <start of the reason>", expected key)
    ("select id, amount from orders where amount > 1", None, "linear", ["id"]),
    ("select o.id, c.region from orders o join customers c on c.name = o.customer", None, "linear", ["id"]),
    ("select customer, sum(amount) as s from orders group by customer", None, "aggregate", None),
    ("select customer, sum(amount) as s from orders where customer is not null group by customer", None,
     "aggregate", ["customer"]),
    ("select o.customer, c.region, count(*) as n from orders o join customers c on c.name = o.customer "
     "group by o.customer, c.region", ["customer"], "keys", ["customer"]),
    ("select c.name, x.n from customers c left join (select customer, count(*) as n from orders group by customer) x "
     "on x.customer = c.name", None, "keys", ["name"]),
    ("select o.id, c.region from customers c right join orders o on o.customer = c.name", None, "keys", ["id"]),
    # semi- and anti-joins correlated by an equality: with a key, the affected-key rule; without one, a delta term
    # per subquery, over the rows its change touches
    ("select o.id from orders o where exists (select 1 from payments p where p.order_id = o.id)", None, "keys",
     ["id"]),
    ("select o.id from orders o where not exists (select 1 from payments p where p.order_id = o.id)", None, "keys",
     ["id"]),
    ("select o.id from orders o where o.customer in (select name from customers where region = 'n')", None, "keys",
     ["id"]),
    ("select o.customer from orders o where exists (select 1 from payments p where p.order_id = o.id)", None,
     "linear", None),
    ("select o.customer, count(*) as n from orders o where exists (select 1 from payments p where p.order_id = o.id "
     "and p.amount <> o.amount) group by o.customer", None, "aggregate", None),
    # correlated by no equality: affected keys, or no rule
    ("select o.id from orders o where exists (select 1 from payments p where p.amount > o.amount)", None,
     "full: subquery reading payments is not correlated", ["id"]),
    ("select o.id, (select count(*) from payments p where p.order_id = o.id) as n from orders o", None, "keys", ["id"]),
    ("select order_id, pid from (select order_id, pid, row_number() over (partition by order_id order by amount desc) "
     "as rn from payments where order_id is not null) x where rn = 1", ["order_id"], "dedupe", ["order_id"]),
    # the dedupe rule: DISTINCT ON, and row_number() = 1 in a CTE over a join; a dedupe whose order reads a
    # window is not one (affected keys)
    ("select distinct on (customer) customer, id, amount from orders where customer is not null "
     "order by customer, amount desc, id", ["customer"], "dedupe", ["customer"]),
    ("with r as (select p.order_id, o.customer, row_number() over (partition by p.order_id order by p.pid) as n "
     "from payments p join orders o on o.id = p.order_id) select order_id, customer from r where n = 1",
     ["order_id"], "dedupe", ["order_id"]),
    ("select order_id, pid from (select order_id, pid, row_number() over (partition by order_id order by "
     "sum(amount) over (partition by order_id)) as rn from payments where order_id is not null) x where rn = 1",
     ["order_id"], "keys", ["order_id"]),
    ("select name from customers intersect select customer from orders", None, "keys", ["name"]),
    ("select customer, count(distinct day) as days from orders where customer is not null group by customer", None,
     "keys", ["customer"]),
    # refused, with the construct named
    ("select id, row_number() over (order by amount) as rn from orders", None,
     "full: window function row_number without PARTITION BY", ["id"]),
    # NOT IN: NOT EXISTS under two guards (the subquery's NULLs and its emptiness unchanged)
    ("select o.id from orders o where o.customer not in (select name from customers)", None, "linear", ["id"]),
    ("select o.id from orders o where o.amount > (select avg(amount) from orders)", None, "linear", ["id"]),
    ("select o.id from orders o where o.amount > (select avg(amount) from orders) + (select min(amount) from orders)",
     None, "linear", ["id"]),
    # an inner alias that shadows the outer one: not a correlation (TPC-H Q11's HAVING)
    ("select o.id from orders o where exists (select 1 from orders o, customers c where c.name = o.customer)", None,
     "full: subquery reading orders is not correlated", ["id"]),
    # a top-N of one table: its first n rows against the table's (a top-N over joins or aggregates is split
    # into its input and such a model when the pipeline is read: tests/test_corpus.py)
    ("select id, amount from orders order by amount desc limit 10", None, "topn", ["id"]),
    ("select id, amount from orders where amount > 0 order by amount desc limit 10 offset 5", None, "topn", ["id"]),
    ("select id, amount from orders limit 10", None, "full: LIMIT", ["id"]),
    ("select id, now() as t from orders", None, "full: non-deterministic function", None),
    ("select o.id from orders o join ext e on e.x = o.id", None, "full: reads external table ext", None),
    # no GROUP BY: one row of state; expressions over aggregates from their state
    ("select count(*) as n from orders", None, "aggregate", None),
    ("select 100.0 * sum(amount) / count(*) as pct, max(amount) - min(amount) as spread from orders", None,
     "aggregate", None),
    ("select customer, sum(amount) / nullif(count(*), 0) as mean from orders group by customer", None,
     "aggregate", None),
    # an expression reading a column outside its aggregates and the GROUP BY: no state rule; affected keys
    ("select customer, amount * count(*) as x from orders group by customer, amount", None, "keys", None),
    ("select count(distinct customer) as n from orders", None, "full: count(DISTINCT ...)", None),
    # an uncorrelated scalar subquery that aggregates: a constant while its value does not change
    ("select id, amount from orders where amount > (select avg(amount) from orders)", None, "linear", ["id"]),
    ("select o.customer, count(*) as n from orders o where o.amount > (select avg(p.amount) from payments p) "
     "group by o.customer", None, "aggregate", None),
    ("select id, amount - (select max(p.amount) from payments p) as gap from orders", None, "linear", ["id"]),
    # correlated, or not one aggregate row: no such rule
    ("select o.id from orders o where o.amount > (select avg(p.amount) from payments p where p.order_id = o.id) "
     "and o.amount > 0 limit 5", None, "full: LIMIT", ["id"]),
    ("select id from orders where amount > (select p.amount from payments p limit 1)", None,
     "full: subquery reading payments is not correlated", ["id"]),
    # an aggregate only in a WHERE subquery is not "an aggregate without GROUP BY"
    ("select o.id from orders o where o.amount > (select max(p.amount) from payments p where p.order_id = o.id)", None,
     "keys", ["id"]),
]


@pytest.mark.parametrize("sql,key,expected,ekey", CASES)
def test_classification(sql, key, expected, ekey):
    c = compile_(sql, key)
    if expected.startswith("full: "):
        assert not c.incremental and c.why_full.startswith(expected[6:]), c.why_full
    else:
        assert c.incremental and c.shape == expected, (c.shape, c.why_full)
    assert c.key == ekey


def test_joins_compile_to_one_term_per_input():
    six = ("select o.id from orders o join customers c on c.name = o.customer join payments p on p.order_id = o.id "
           "join customers c2 on c2.name = o.customer join payments p2 on p2.pid = p.pid "
           "join orders o2 on o2.id = o.id")
    c = compile_(six, ["id"])
    assert c.incremental and c.shape == "linear"
    # term i reads the change of input i and the old state (now + change) of the i inputs before it:
    # 6 terms and 21 reads of changes, where expanding the product gave 63 terms and 192 reads
    assert c.delta_sql.count("pg_temp.\"_dp_d_") == 21
