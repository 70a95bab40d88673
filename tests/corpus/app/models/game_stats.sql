-- sums and averages of a double precision column per game
select game,
       count(*) as plays,
       sum(accuracy) as total_accuracy,
       avg(accuracy) as avg_accuracy,
       min(accuracy) as worst
from scores
group by game
