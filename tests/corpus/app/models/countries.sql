-- SELECT DISTINCT with NULLs: the country and plan combinations in use
select distinct country, plan
from users
