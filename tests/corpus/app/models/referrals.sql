-- a self-join: who referred whom, and the referrer's plan
select u.id, u.name, r.id as referrer_id, r.name as referrer_name, r.plan as referrer_plan
from users u
join users r on r.id = u.referred_by
