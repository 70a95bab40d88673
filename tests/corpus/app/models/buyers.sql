-- semi-join: users with at least one purchase (IN), with their team count
select u.id, u.name, u.country, count(m.team) as teams
from users u
left join memberships m on m.user_id = u.id
where u.id in (select e.user_id from events e where e.kind = 'purchase')
group by u.id, u.name, u.country
