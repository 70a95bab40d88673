-- aggregates without GROUP BY: one row of headline figures
select count(*) as users,
       count(country) as with_country,
       count(distinct plan) as plans,
       min(signup_day) as first_signup,
       max(signup_day) as last_signup
from users
