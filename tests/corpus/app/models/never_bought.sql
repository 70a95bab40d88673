-- key: user_id
-- EXCEPT, keyed: users who never purchased
select id as user_id from users
except
select user_id from events where kind = 'purchase'
