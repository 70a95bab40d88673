-- UNION ALL of two aggregates, both grouped by team
select m.team, 'events' as what, count(*) as n
from memberships m
join events e on e.user_id = m.user_id
group by m.team
union all
select m.team, 'scores' as what, count(*) as n
from memberships m
join scores s on s.user_id = m.user_id
group by m.team
