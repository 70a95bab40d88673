-- scalar subquery: purchases above the overall average purchase
select e.id, e.user_id, e.amount,
       e.amount - (select avg(x.amount) from events x where x.kind = 'purchase') as above_by
from events e
where e.kind = 'purchase'
  and e.amount > (select avg(x.amount) from events x where x.kind = 'purchase')
