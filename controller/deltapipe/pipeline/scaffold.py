"""`deltapipe new DIR`: a small working pipeline with data."""

from __future__ import annotations

from pathlib import Path

from deltapipe.errors import DeltapipeError

FILES = {
    "pipeline.toml": '''# A deltapipe pipeline: sources are files loaded into datasets, models are SELECTs.
name = "{name}"
# schema = "public"          # where the model tables are built

[[sources]]
dataset = "{name}_customers"
file = "data/customers.csv"
key = "id"
mode = "snapshot"            # snapshot | upsert | append | changes

[[sources]]
dataset = "{name}_orders"
file = "data/orders.csv"     # or a glob: "data/orders_*.csv"
key = "id"
columns = "id bigint, customer_id bigint, amount numeric(10,2), day date"
''',
    "data/customers.csv": "id,name,country\n1,Ada,UK\n2,Grace,US\n3,Linus,FI\n4,Margaret,US\n",
    "data/orders.csv": ("id,customer_id,amount,day\n1,1,10.50,2024-05-01\n2,1,20.00,2024-05-02\n3,2,7.25,2024-05-02\n"
                        "4,3,99.99,2024-05-03\n5,4,5.00,2024-05-03\n6,2,12.00,2024-05-04\n"),
    "models/customer_totals.sql": '''-- key: customer_id
-- Revenue per customer.
SELECT o.customer_id, c.name, c.country, count(*) AS orders, sum(o.amount) AS revenue
FROM {name}_orders o
JOIN {name}_customers c ON c.id = o.customer_id
GROUP BY o.customer_id, c.name, c.country
''',
    "models/country_revenue.sql": '''-- key: country
SELECT country, sum(revenue) AS revenue, sum(orders) AS orders
FROM customer_totals
GROUP BY country
''',
    "models/daily_revenue.sql": '''-- key: day
WITH per_day AS (
    SELECT day, amount FROM {name}_orders
)
SELECT day, sum(amount) AS revenue, count(*) AS orders
FROM per_day
GROUP BY day
''',
}


def scaffold(directory: str | Path, name: str | None = None) -> list[Path]:
    root = Path(directory)
    if root.exists() and any(root.iterdir()):
        raise DeltapipeError("%s exists and is not empty" % root, sqlstate="DP214", hint="choose a new directory")
    name = (name or root.resolve().name).replace("-", "_").lower()
    if not name or not (name[0].isalpha() or name[0] == "_"):
        name = "p_" + name
    out = []
    for rel, text in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text.replace("{name}", name))
        out.append(p)
    return out
