-- HAVING over a join: users who spent more than 150 in purchases
select u.id, u.email, sum(e.amount) as spent, count(*) as purchases
from users u
join events e on e.user_id = u.id
where e.kind = 'purchase'
group by u.id, u.email
having sum(e.amount) > 150
