-- anti-join written as LEFT JOIN ... IS NULL, aggregated
select s.plan, count(*) as orphans, sum(s.price) as price
from subscriptions s
left join users u on u.id = s.user_id
where u.id is null
group by s.plan
