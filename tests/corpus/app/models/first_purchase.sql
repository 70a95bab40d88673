-- dedupe joined to its dimension: each user's first purchase, with the user's country
with purchases as (
    select
        e.id,
        e.user_id,
        e.amount,
        e.day,
        row_number() over (partition by e.user_id order by e.day, e.id) as n
    from events e
    where e.kind = 'purchase'
)
select u.id as user_id, u.country, p.id as event_id, p.amount, p.day
from users u
join purchases p on p.user_id = u.id
where p.n = 1
