-- distinct aggregates per group over a join
select u.country,
       count(distinct e.user_id) as active_users,
       count(distinct e.day) as active_days,
       count(*) as events
from events e
join users u on u.id = e.user_id
group by u.country
