-- key: o_orderkey
-- an uncorrelated IN over another table: orders of BUILDING customers
select
    o_orderkey,
    o_custkey,
    o_totalprice
from
    orders
where
    o_custkey in (select c_custkey from customer where c_mktsegment = 'BUILDING')
