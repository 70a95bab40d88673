-- UNION (without ALL): every known address of a user, from two sources
select id as user_id, email from users
union
select user_id, email from profile_updates
