-- key: user_id
-- INTERSECT: users who both clicked and purchased
select user_id from events where kind = 'click'
intersect
select user_id from events where kind = 'purchase'
