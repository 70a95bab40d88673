select
    order_date,
    status,
    count(*) as orders
from stg_orders
group by 1, 2
