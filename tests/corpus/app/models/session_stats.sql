-- interval aggregates: session lengths per device
select device,
       count(*) as sessions,
       count(ended_at) as closed,
       sum(ended_at - started_at) as total_time,
       avg(ended_at - started_at) as avg_length,
       max(ended_at - started_at) as longest
from sessions
group by device
