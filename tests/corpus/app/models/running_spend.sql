-- key: user_id, id
-- windows: running sum, previous purchase and a moving average per user
select e.user_id, e.id, e.day, e.amount,
       sum(e.amount) over (partition by e.user_id order by e.day, e.id) as running_total,
       lag(e.day) over (partition by e.user_id order by e.day, e.id) as previous_day,
       avg(e.amount) over (partition by e.user_id order by e.day, e.id
                           rows between 2 preceding and current row) as moving_avg
from events e
where e.kind in ('purchase', 'refund')
