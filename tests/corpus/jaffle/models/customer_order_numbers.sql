-- the newer jaffle-shop's order sequence per customer (a window over the customer's orders)
with orders as (

    select * from stg_orders

)

select
    orders.order_id,
    orders.customer_id,
    orders.order_date,
    row_number() over (
        partition by orders.customer_id
        order by orders.order_date, orders.order_id
    ) as customer_order_number

from orders
