-- the top 10 of all games, with the players' names (a top-N)
select s.id, s.game, s.score, u.name
from scores s
join users u on u.id = s.user_id
order by s.score desc, s.id
limit 10
