-- UNION ALL of two inputs (the same ids occur on both sides)
select 'event' as source, id, user_id, day
from events
union all
select 'score' as source, id, user_id, played_on as day
from scores
