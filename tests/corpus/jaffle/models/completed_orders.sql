with orders as (

    select * from stg_orders

),

customers as (

    select * from stg_customers

)

select
    orders.order_id,
    orders.order_date,
    customers.customer_id,
    customers.first_name || ' ' || customers.last_name as customer_name
from orders
join customers on customers.customer_id = orders.customer_id
where orders.status = 'completed'
