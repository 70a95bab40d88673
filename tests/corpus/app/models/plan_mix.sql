-- FULL JOIN: users' plans against subscriptions' plans
select u.id as user_id, u.plan as user_plan, s.id as subscription_id, s.plan as subscribed_plan
from users u
full join subscriptions s on s.user_id = u.id
