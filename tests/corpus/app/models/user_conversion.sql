-- key: user_id
-- an expression over aggregates, keyed: each user's purchase share in percent
select user_id,
       count(*) as events,
       100.0 * sum(case when kind = 'purchase' then 1 else 0 end) / count(*) as purchase_pct,
       max(day) - min(day) as active_span
from events
where user_id is not null
group by user_id
