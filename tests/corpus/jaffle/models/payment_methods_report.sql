-- dbt style: select * from an upstream aggregate model
with payment_methods as (

    select * from payment_methods

)

select * from payment_methods
where payments > 0
