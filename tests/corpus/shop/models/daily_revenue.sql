-- key: day
WITH per_day AS (
    SELECT day, amount FROM shop_orders
)
SELECT day, sum(amount) AS revenue, count(*) AS orders
FROM per_day
GROUP BY day
