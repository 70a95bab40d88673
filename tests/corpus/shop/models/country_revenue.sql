-- key: country
SELECT country, sum(revenue) AS revenue, sum(orders) AS orders
FROM customer_totals
GROUP BY country
