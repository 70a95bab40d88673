-- HAVING with count(distinct)
select game, count(distinct user_id) as players, max(score) as best
from scores
group by game
having count(distinct user_id) >= 3
