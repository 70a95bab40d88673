-- nested aggregates joined back: each user's spend next to the average spend of the country
with spend as (
    select user_id, sum(amount) as spent
    from events
    where kind = 'purchase'
    group by user_id
),
by_country as (
    select u.country, avg(s.spent) as avg_spent, count(*) as buyers
    from spend s
    join users u on u.id = s.user_id
    group by u.country
)
select u.id, u.country, s.spent, c.avg_spent, s.spent - c.avg_spent as above_avg
from users u
join spend s on s.user_id = u.id
join by_country c on c.country = u.country
