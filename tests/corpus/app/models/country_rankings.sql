-- key: country, user_id
-- a window over an aggregate: users ranked by spend within their country
select u.country,
       e.user_id,
       sum(e.amount) as spent,
       rank() over (partition by u.country order by sum(e.amount) desc nulls last) as country_rank
from events e
join users u on u.id = e.user_id
where u.country is not null
group by u.country, e.user_id
