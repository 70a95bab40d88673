"""Column lineage through `*` and `alias.*`: stars expanded through CTEs, derived tables, set operations and
upstream tables (their columns from the database and the catalog, from pipeline.toml, or from the files of the
same scan, analysed in dependency order), so dbt-style models ending in `select * from final` have lineage."""

from __future__ import annotations

import json

from jaffle_helpers import make_jaffle
from pipeline_helpers import make_pipeline
from test_lineage import edges, scan_json, write_corpus

# File names sort against the dependency order: the scan must analyse the DDL first, then the tables built on it.
STARS = {
    "a_chain.sql": """
        -- a CTE chain of stars over a table another file builds
        CREATE VIEW mart.big AS
        WITH a AS (SELECT * FROM mart.orders_wide),
             b AS (SELECT a.* FROM a WHERE amount > 10),
             c AS (SELECT * FROM b)
        SELECT * FROM c;
    """,
    "b_wide.sql": """
        -- alias.* beside a renamed column
        CREATE TABLE mart.orders_wide AS
        SELECT o.*, c.name AS customer_name
          FROM raw.orders o JOIN raw.customers c ON c.id = o.customer_id;
    """,
    "c_union.sql": """
        CREATE TABLE mart.people AS
        SELECT * FROM (SELECT id, name FROM raw.customers
                       UNION ALL
                       SELECT id, status FROM raw.orders) u;
    """,
    "d_nested.sql": """
        CREATE TABLE mart.nested AS
        SELECT * FROM (SELECT * FROM (SELECT x.id AS order_id, x.amount * 2 AS doubled
                                        FROM mart.orders_wide x) inner_q
                        WHERE doubled > 0) outer_q;
    """,
    "e_pivot.sql": """
        -- one column from several inputs; a correlated scalar subquery
        CREATE TABLE mart.by_customer AS
        SELECT customer_id,
               sum(CASE WHEN status = 'paid' THEN amount END) AS paid,
               (SELECT max(c.country) FROM raw.customers c WHERE c.id = o.customer_id) AS country
          FROM raw.orders o GROUP BY customer_id;
    """,
    "f_insert.sql": """
        -- INSERT ... SELECT * by position into a table of this file
        CREATE TABLE mart.archive (order_ref int, cust int, value numeric, state text);
        INSERT INTO mart.archive SELECT * FROM raw.orders;
    """,
    "g_recursive.sql": """
        CREATE VIEW mart.chain AS
        WITH RECURSIVE t AS (SELECT id, customer_id AS root FROM raw.orders
                             UNION ALL
                             SELECT o.id, t.root FROM raw.orders o JOIN t ON o.customer_id = t.id)
        SELECT * FROM t;
    """,
    "z_ddl.sql": """
        CREATE TABLE raw.orders (id int, customer_id int, amount numeric, status text);
        CREATE TABLE raw.customers (id int, name text, country text);
    """,
}


def col_edges(conn):
    return {(a, b) for a, b in edges(conn, "derives") if a.count(".") == 2}


def upstream(cli, name):
    r = cli("lineage", "show", name, "--upstream", "--json")
    assert r.exit_code == 0, r.output
    return {x["name"] for x in json.loads(r.output)["rows"]}


def test_stars_through_ctes_derived_tables_unions_and_files(cli, conn, tmp_path):
    d = write_corpus(tmp_path / "sql", STARS)
    r = scan_json(cli, d)
    assert r["failed"] == [], r
    cols = col_edges(conn)
    wide = {("raw.orders.%s" % c, "mart.orders_wide.%s" % c) for c in ("id", "customer_id", "amount", "status")}
    assert wide | {("raw.customers.name", "mart.orders_wide.customer_name")} <= cols, sorted(cols)
    # every column of the view, through three CTEs of stars
    big = {b for a, b in cols if b.startswith("mart.big.")}
    assert big == {"mart.big.%s" % c for c in ("id", "customer_id", "amount", "status", "customer_name")}
    assert ("mart.orders_wide.customer_name", "mart.big.customer_name") in cols
    assert {("raw.customers.name", "mart.people.name"), ("raw.orders.status", "mart.people.name"),
            ("raw.customers.id", "mart.people.id"), ("raw.orders.id", "mart.people.id")} <= cols
    assert {("mart.orders_wide.id", "mart.nested.order_id"), ("mart.orders_wide.amount", "mart.nested.doubled")} <= cols
    assert {("raw.orders.amount", "mart.by_customer.paid"), ("raw.orders.status", "mart.by_customer.paid"),
            ("raw.customers.country", "mart.by_customer.country"),
            ("raw.orders.customer_id", "mart.by_customer.customer_id")} <= cols
    assert {("raw.orders.id", "mart.archive.order_ref"), ("raw.orders.status", "mart.archive.state")} <= cols
    assert {("raw.orders.id", "mart.chain.id"), ("raw.orders.customer_id", "mart.chain.root")} <= cols
    # no column is derived from a column that does not exist
    known = {"raw.orders.%s" % c for c in ("id", "customer_id", "amount", "status")} | \
            {"raw.customers.%s" % c for c in ("id", "name", "country")}
    assert {a for a, _b in cols if a.startswith("raw.")} <= known
    # and lineage show walks it
    assert {"mart.orders_wide.customer_name", "raw.customers.name"} <= upstream(cli, "mart.big.customer_name")
    assert upstream(cli, "mart.nested.doubled") == {"mart.orders_wide.amount", "raw.orders.amount"}

    # a second scan takes everything from the cache (the columns each file depended on are unchanged)
    again = scan_json(cli, d)
    assert (again["cache_hits"], again["cache_misses"], again["edges_added"], again["edges_removed"]) == (8, 0, 0, 0)

    # a column added to a table: the files reading it are parsed again, the others come from the cache
    (d / "z_ddl.sql").write_text(STARS["z_ddl.sql"].replace("country text", "country text, email text"))
    third = scan_json(cli, d)
    assert (third["cache_hits"], third["cache_misses"]) == (4, 4), third  # z_ddl, b_wide, c_union, e_pivot
    assert col_edges(conn) == cols
    # one that a star expands: it reaches the tables built over the star, files away
    (d / "z_ddl.sql").write_text(STARS["z_ddl.sql"].replace("status text", "status text, channel text"))
    scan_json(cli, d)
    assert {("raw.orders.channel", "mart.orders_wide.channel"), ("mart.orders_wide.channel", "mart.big.channel"),
            ("raw.orders.channel", "mart.archive.channel")} - col_edges(conn) == \
        {("raw.orders.channel", "mart.archive.channel")}  # INSERT has 4 target columns: nothing past them


def test_columns_from_the_database_and_the_catalog(cli, conn, tmp_path):
    """A star over a table of the database (or a dataset of the catalog) is expanded with its columns; the
    deltapipe hidden columns (_dp_...) are not columns of the table."""
    conn.execute("CREATE TABLE public.events (id int, kind text, at timestamptz)")
    assert cli("dataset", "create", "visits", "--key", "id", "--columns", "id bigint, page text").exit_code == 0
    d = write_corpus(tmp_path / "sql", {"v.sql": """
        CREATE VIEW report AS
        WITH e AS (SELECT * FROM events), v AS (SELECT * FROM visits)
        SELECT * FROM e JOIN v USING (id);
    """})
    assert scan_json(cli, d)["failed"] == []
    cols = col_edges(conn)
    assert {("public.events.kind", "public.report.kind"), ("public.events.at", "public.report.at"),
            ("public.visits.page", "public.report.page"), ("public.events.id", "public.report.id"),
            ("public.visits.id", "public.report.id")} == cols
    # the table changes: the file is analysed again
    conn.execute("ALTER TABLE public.events ADD COLUMN source text")
    r = scan_json(cli, d)
    assert (r["cache_hits"], r["cache_misses"]) == (0, 1)
    assert ("public.events.source", "public.report.source") in col_edges(conn)


def test_jaffle_shop_lineage_through_select_star_from_final(cli, conn, tmp_path):
    """dbt's jaffle_shop: every model ends in `select * from final|renamed`. Sources declared in pipeline.toml
    give the raw columns before anything is deployed."""
    d = make_jaffle(tmp_path / "jaffle")
    r = scan_json(cli, d)
    assert r["failed"] == [] and r["files"] == 5
    r = cli("lineage", "show", "customers.customer_lifetime_value", "--upstream")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "upstream column public.customers.customer_lifetime_value"
    assert "<- column public.stg_payments.amount " in r.output
    assert "<- column public.raw_payments.amount " in r.output
    assert upstream(cli, "customers.customer_lifetime_value") == {"public.stg_payments.amount",
                                                                 "public.raw_payments.amount"}
    assert upstream(cli, "customers.first_order") == {"public.stg_orders.order_date", "public.raw_orders.order_date"}
    assert upstream(cli, "orders.credit_card_amount") == {
        "public.stg_payments.amount", "public.stg_payments.payment_method",
        "public.raw_payments.amount", "public.raw_payments.payment_method"}
    # every model column has its upstream columns
    cols = col_edges(conn)
    for model, names in {"customers": ["customer_id", "first_name", "last_name", "first_order", "most_recent_order",
                                       "number_of_orders", "customer_lifetime_value"],
                         "orders": ["order_id", "customer_id", "order_date", "status", "credit_card_amount",
                                    "coupon_amount", "bank_transfer_amount", "gift_card_amount", "amount"],
                         "stg_orders": ["order_id", "customer_id", "order_date", "status"]}.items():
        for c in names:
            assert any(b == "public.%s.%s" % (model, c) for _a, b in cols), (model, c)
    down = json.loads(cli("lineage", "show", "raw_orders.user_id", "--downstream", "--json").output)
    # customers.customer_id comes from stg_customers (the orders only join on it)
    assert {x["name"] for x in down["rows"]} == {"public.stg_orders.customer_id", "public.orders.customer_id"}


def test_jaffle_shop_sources_from_the_catalog(cli, conn, tmp_path):
    """The raw tables are datasets loaded with `deltapipe load` (not declared by the pipeline): their columns
    come from the catalog."""
    d = make_jaffle(tmp_path / "jaffle", declare_sources=False)
    for t in ("raw_customers", "raw_orders", "raw_payments"):
        r = cli("dataset", "create", t, "--key", "id", "--from", d / "data" / ("%s.csv" % t))
        assert r.exit_code == 0, r.output
    assert scan_json(cli, d)["failed"] == []
    assert "public.raw_payments.amount" in upstream(cli, "customers.customer_lifetime_value")


def test_pipeline_schema_reads_public_tables_by_search_path(cli, conn, tmp_path):
    """Models of a pipeline with its own schema find unqualified tables as search_path does: the pipeline's
    schema first, then public (where its source datasets are)."""
    d = make_pipeline(tmp_path / "p", {"wide": "SELECT * FROM orders", "top": "SELECT w.* FROM wide w"})
    (d / "pipeline.toml").write_text('schema = "analytics"\n' + (d / "pipeline.toml").read_text())
    assert scan_json(cli, d)["failed"] == []
    cols = col_edges(conn)
    assert {("public.orders.amount", "analytics.wide.amount"), ("analytics.wide.amount", "analytics.top.amount"),
            ("public.orders.day", "analytics.wide.day")} <= cols
    assert ("public.orders", "analytics.wide") in edges(conn, "derives")
