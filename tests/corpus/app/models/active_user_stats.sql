-- a filter over a model refreshed by affected keys
select id, name, events, best_score
from user_stats
where events >= 5
