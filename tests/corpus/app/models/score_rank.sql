-- a window over all rows: each score's percentile among all games (no PARTITION BY)
select s.id, s.game, s.score,
       percent_rank() over (order by s.score) as pct
from scores s
