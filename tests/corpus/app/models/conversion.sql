-- expressions over aggregates: purchase conversion per country, in percent
select u.country,
       count(*) as events,
       100.0 * sum(case when e.kind = 'purchase' then 1 else 0 end) / count(*) as purchase_pct,
       coalesce(sum(e.amount) filter (where e.kind = 'purchase'), 0)
         - coalesce(sum(e.amount) filter (where e.kind = 'refund'), 0) as net_revenue
from events e
join users u on u.id = e.user_id
group by u.country
