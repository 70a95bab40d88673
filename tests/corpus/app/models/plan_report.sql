-- a report with quoted, mixed-case and reserved-word column names
select u.plan as "Plan",
       count(*) as "Events",
       sum(e.amount) as "Total Spend",
       count(e.amount) as "order"
from users u
join events e on e.user_id = u.id
group by u.plan
