-- INTERSECT without a key: members of both alpha and beta
select user_id from memberships where team = 'alpha'
intersect
select user_id from memberships where team = 'beta'
