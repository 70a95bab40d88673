-- a join whose rows repeat (no key: the same country, kind and day occur many times)
select u.country, e.kind, e.day
from events e
join users u on u.id = e.user_id
