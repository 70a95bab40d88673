-- the newer jaffle-shop's customers mart: a summary of the orders mart, new vs returning
with customers as (

    select * from stg_customers

),

orders as (

    select * from orders

),

customer_orders_summary as (

    select
        orders.customer_id,

        count(distinct orders.order_id) as count_lifetime_orders,
        count(distinct orders.order_id) > 1 as is_repeat_buyer,
        min(orders.order_date) as first_ordered_at,
        max(orders.order_date) as last_ordered_at,
        sum(orders.amount) as lifetime_spend

    from orders

    group by 1

),

joined as (

    select
        customers.customer_id,
        customers.first_name,
        customers.last_name,
        customer_orders_summary.count_lifetime_orders,
        customer_orders_summary.first_ordered_at,
        customer_orders_summary.last_ordered_at,
        customer_orders_summary.lifetime_spend,

        case
            when customer_orders_summary.is_repeat_buyer then 'returning'
            else 'new'
        end as customer_type

    from customers

    left join customer_orders_summary
        on customers.customer_id = customer_orders_summary.customer_id

)

select * from joined
