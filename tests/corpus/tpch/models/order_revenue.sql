-- key: o_orderkey
-- a TPC-H-style mart: revenue per order, comma joins, its customer carried through the GROUP BY
select
    o_orderkey,
    o_custkey,
    c_mktsegment,
    count(*) as lines,
    sum(l_extendedprice * (1 - l_discount)) as revenue,
    max(l_shipdate) as last_shipped
from
    orders,
    lineitem,
    customer
where
    l_orderkey = o_orderkey
    and c_custkey = o_custkey
group by
    o_orderkey,
    o_custkey,
    c_mktsegment
