-- key: l_orderkey, l_linenumber
-- Q21's inner test, keyed: late lines of multi-supplier orders whose other suppliers were all on time
select
    l1.l_orderkey,
    l1.l_linenumber,
    l1.l_suppkey
from
    lineitem l1
where
    l1.l_receiptdate > l1.l_commitdate
    and exists (
        select * from lineitem l2
        where l2.l_orderkey = l1.l_orderkey and l2.l_suppkey <> l1.l_suppkey
    )
    and not exists (
        select * from lineitem l3
        where l3.l_orderkey = l1.l_orderkey and l3.l_suppkey <> l1.l_suppkey
          and l3.l_receiptdate > l3.l_commitdate
    )
