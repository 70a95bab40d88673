-- key: day
select day, count(distinct user_id) as dau, count(*) as events
from events
group by day
