-- anti-join: events whose user does not exist (NOT EXISTS)
select e.id, e.user_id, e.kind, e.day
from events e
where not exists (select 1 from users u where u.id = e.user_id)
