select distinct
    customer_id,
    status
from stg_orders
