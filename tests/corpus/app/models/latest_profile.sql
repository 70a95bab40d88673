-- key: user_id
-- dedupe: each user's latest profile update (row_number() = 1)
select user_id, email, country, updated_at
from (
    select
        p.user_id,
        p.email,
        p.country,
        p.updated_at,
        row_number() over (partition by p.user_id order by p.updated_at desc, p.id desc) as rn
    from profile_updates p
) ranked
where rn = 1
