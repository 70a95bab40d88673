-- a join written with USING
select
    order_id,
    customer_id,
    stg_customers.first_name,
    stg_orders.order_date
from stg_orders
join stg_customers using (customer_id)
