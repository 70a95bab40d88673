with orders as (

    select * from stg_orders
    where status not in ('returned', 'return_pending')

),

payments as (

    select * from stg_payments

)

select
    date_trunc('month', orders.order_date) as order_month,
    sum(payments.amount) as revenue,
    count(distinct orders.order_id) as paid_orders
from orders
join payments on payments.order_id = orders.order_id
group by 1
