"""dbt's jaffle_shop as deltapipe models (staging `select * from renamed`, marts `select * from final`), with
small raw data: for the lineage and docs tests."""

from __future__ import annotations

from pathlib import Path

from pipeline_helpers import make_pipeline

MODELS = {
    "stg_customers": """with source as (select * from raw_customers),
renamed as (select id as customer_id, first_name, last_name from source)
select * from renamed""",
    "stg_orders": """with source as (select * from raw_orders),
renamed as (select id as order_id, user_id as customer_id, order_date, status from source)
select * from renamed""",
    "stg_payments": """with source as (select * from raw_payments),
renamed as (select id as payment_id, order_id, payment_method, amount / 100.0 as amount from source)
select * from renamed""",
    "customers": """with customers as (select * from stg_customers),
orders as (select * from stg_orders),
payments as (select * from stg_payments),
customer_orders as (
    select customer_id, min(order_date) as first_order, max(order_date) as most_recent_order,
           count(order_id) as number_of_orders
    from orders group by customer_id
),
customer_payments as (
    select orders.customer_id, sum(amount) as total_amount
    from payments
    left join orders on payments.order_id = orders.order_id
    group by orders.customer_id
),
final as (
    select customers.customer_id, customers.first_name, customers.last_name,
           customer_orders.first_order, customer_orders.most_recent_order, customer_orders.number_of_orders,
           customer_payments.total_amount as customer_lifetime_value
    from customers
    left join customer_orders on customers.customer_id = customer_orders.customer_id
    left join customer_payments on customers.customer_id = customer_payments.customer_id
)
select * from final""",
    "orders": """with orders as (select * from stg_orders),
payments as (select * from stg_payments),
order_payments as (
    select order_id,
           sum(case when payment_method = 'credit_card' then amount else 0 end) as credit_card_amount,
           sum(case when payment_method = 'coupon' then amount else 0 end) as coupon_amount,
           sum(case when payment_method = 'bank_transfer' then amount else 0 end) as bank_transfer_amount,
           sum(case when payment_method = 'gift_card' then amount else 0 end) as gift_card_amount,
           sum(amount) as total_amount
    from payments group by order_id
),
final as (
    select orders.order_id, orders.customer_id, orders.order_date, orders.status,
           order_payments.credit_card_amount, order_payments.coupon_amount,
           order_payments.bank_transfer_amount, order_payments.gift_card_amount,
           order_payments.total_amount as amount
    from orders
    left join order_payments on orders.order_id = order_payments.order_id
)
select * from final""",
}

RAW = {
    "raw_customers": ("id bigint, first_name text, last_name text",
                      "id,first_name,last_name\n1,Michael,P.\n2,Shawn,M.\n3,Kathleen,P.\n"),
    "raw_orders": ("id bigint, user_id bigint, order_date date, status text",
                   "id,user_id,order_date,status\n1,1,2018-01-01,returned\n2,3,2018-01-02,completed\n"
                   "3,1,2018-01-04,completed\n4,2,2018-01-05,placed\n"),
    "raw_payments": ("id bigint, order_id bigint, payment_method text, amount bigint",
                     "id,order_id,payment_method,amount\n1,1,credit_card,1000\n2,2,credit_card,2000\n"
                     "3,3,coupon,100\n4,3,gift_card,2500\n5,4,bank_transfer,1700\n"),
}


def make_jaffle(root: Path, declare_sources: bool = True, name: str = "jaffle") -> Path:
    """A jaffle_shop pipeline directory; its raw tables are pipeline sources, or (declare_sources=False) only
    CSV files under data/ for the caller to load as datasets of the catalog."""
    data = {"data/%s.csv" % t: csv for t, (_cols, csv) in RAW.items()}
    sources = "".join('[[sources]]\ndataset = "%s"\nfile = "data/%s.csv"\nkey = "id"\ncolumns = "%s"\n' % (t, t, cols)
                      for t, (cols, _csv) in RAW.items()) if declare_sources else ""
    return make_pipeline(root, MODELS, sources=sources, data=data, name=name)
