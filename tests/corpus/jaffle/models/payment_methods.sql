with payments as (

    select * from stg_payments

)

select
    payment_method,
    count(*) as payments,
    sum(amount) as total_amount,
    avg(amount) as avg_amount,
    max(amount) as largest_payment
from payments
group by payment_method
