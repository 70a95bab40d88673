-- key: customer_id
-- Revenue per customer.
SELECT o.customer_id, c.name, c.country, count(*) AS orders, sum(o.amount) AS revenue
FROM shop_orders o
JOIN shop_customers c ON c.id = o.customer_id
GROUP BY o.customer_id, c.name, c.country
