-- key: c_custkey
-- correlated scalar subqueries in SELECT: each customer's order count and latest order date
select
    c.c_custkey,
    c.c_name,
    (select count(*) from orders o where o.o_custkey = c.c_custkey) as orders,
    (select max(o.o_orderdate) from orders o where o.o_custkey = c.c_custkey) as last_order
from
    customer c
