-- a dimension LEFT JOINed to two aggregates (jaffle's customers shape, on app data)
with ev as (
    select user_id, count(*) as events, max(day) as last_seen
    from events
    group by user_id
),
sc as (
    select user_id, max(score) as best_score, count(*) as games
    from scores
    group by user_id
)
select u.id, u.name, coalesce(ev.events, 0) as events, ev.last_seen, sc.best_score, sc.games
from users u
left join ev on ev.user_id = u.id
left join sc on sc.user_id = u.id
