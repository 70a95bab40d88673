-- key: user_id
-- HAVING, keyed: users with at least six events, joined to their name
select e.user_id, u.name, count(*) as events, count(distinct e.kind) as kinds
from events e
join users u on u.id = e.user_id
group by e.user_id, u.name
having count(*) >= 6
