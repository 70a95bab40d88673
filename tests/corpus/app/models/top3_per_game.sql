-- key: game, id
-- top-N per group: the three best scores of each game
select game, id, user_id, score, rk
from (
    select s.game, s.id, s.user_id, s.score,
           rank() over (partition by s.game order by s.score desc) as rk
    from scores s
) ranked
where rk <= 3
