-- key: user_id
-- dedupe with DISTINCT ON: the latest email of each user
select distinct on (user_id)
    user_id,
    email,
    updated_at
from profile_updates
order by user_id, updated_at desc, id desc
