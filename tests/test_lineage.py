"""Lineage: `deltapipe lineage scan DIR` over a corpus of varied SQL, the parse cache, `lineage show`."""

from __future__ import annotations

import json
import textwrap

import pytest

from pipeline_helpers import make_pipeline

CORPUS = {
    # CTAS through a CTE and a star: columns pass through
    "etl/01_ctas.sql": """
        CREATE TABLE mart.customer_totals AS
        WITH o AS (SELECT * FROM raw.orders WHERE amount > 0)
        SELECT o.customer, sum(o.amount) AS total FROM o GROUP BY o.customer;
    """,
    # multi-statement file: INSERT ... SELECT with a column list and a join, then an UPDATE ... FROM
    "etl/02_multi.sql": """
        -- two statements
        INSERT INTO mart.enriched (cust, value_eur)
        SELECT c.name, o.amount * fx.rate
          FROM raw.orders o JOIN raw.customers c ON c.id = o.customer_id JOIN raw.fx fx ON fx.cur = o.cur;

        UPDATE mart.enriched e SET value_eur = e.value_eur * a.factor
          FROM raw.adjust a WHERE a.cust = e.cust;
    """,
    # a view over a UNION, reading the CTAS target
    "views/report.sql": """
        CREATE VIEW mart.report AS
        SELECT customer AS who, total FROM mart.customer_totals
        UNION ALL
        SELECT cust, value_eur FROM mart.enriched;
    """,
    # parse errors: the scan reports them with file and line and goes on
    "broken/bad_from.sql": "SELECT 1;\n\nSELECT a FROM WHERE x;\n",
    "broken/unterminated.sql": "SELECT 'abc\n",
    # statements without lineage are fine
    "misc/ddl.sql": "CREATE INDEX ON raw.orders (customer);\nSET search_path = public;\n",
}


def write_corpus(root, files=CORPUS):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


def scan_json(cli, d, *extra):
    r = cli("lineage", "scan", d, "--json", *extra)
    assert r.exit_code in (0, 2), r.output
    return json.loads(r.output)


def edges(conn, kind):
    return set(conn.execute("""SELECT a.name, b.name FROM deltapipe.lineage_edge e
                                 JOIN deltapipe.lineage_node a ON a.id = e.src
                                 JOIN deltapipe.lineage_node b ON b.id = e.dst WHERE e.kind = %s""", (kind,)).fetchall())


def test_scan_builds_table_and_column_lineage(cli, conn, tmp_path):
    d = write_corpus(tmp_path / "sql")
    r = cli("lineage", "scan", d)
    assert r.exit_code == 2, r.output  # some files failed to parse
    out = r.output
    assert "scanned 6 files" in out and "6 parsed, 0 cache hits, 6 cache misses, 2 failed" in out, out
    assert "failed %s:3: " % (d / "broken/bad_from.sql") in out, out
    assert "failed %s:" % (d / "broken/unterminated.sql") in out, out

    t = edges(conn, "derives")
    tables = {(a, b) for a, b in t if a.count(".") == 1}
    assert tables == {
        ("raw.orders", "mart.customer_totals"),
        ("raw.orders", "mart.enriched"), ("raw.customers", "mart.enriched"), ("raw.fx", "mart.enriched"),
        ("raw.adjust", "mart.enriched"),
        ("mart.customer_totals", "mart.report"), ("mart.enriched", "mart.report"),
    }
    cols = {(a, b) for a, b in t if a.count(".") == 2}
    assert {
        ("raw.orders.customer", "mart.customer_totals.customer"),   # through the CTE's star
        ("raw.orders.amount", "mart.customer_totals.total"),
        ("raw.customers.name", "mart.enriched.cust"),                # INSERT column list, by position
        ("raw.orders.amount", "mart.enriched.value_eur"),
        ("raw.fx.rate", "mart.enriched.value_eur"),
        ("raw.adjust.factor", "mart.enriched.value_eur"),            # UPDATE ... FROM
        ("mart.customer_totals.customer", "mart.report.who"),        # UNION branches by position
        ("mart.enriched.cust", "mart.report.who"),
        ("mart.enriched.value_eur", "mart.report.total"),
    } <= cols, sorted(cols)
    files = {n for (n,) in conn.execute("SELECT name FROM deltapipe.lineage_node WHERE kind = 'file'")}
    assert files == {str(d / rel) for rel in CORPUS}
    assert (str(d / "etl/02_multi.sql"), "mart.enriched") in edges(conn, "writes")
    assert ("raw.adjust", str(d / "etl/02_multi.sql")) in edges(conn, "reads")


def test_cache_hits_then_a_miss_after_an_edit(cli, conn, tmp_path):
    d = write_corpus(tmp_path / "sql")
    first = scan_json(cli, d)
    assert (first["cache_hits"], first["cache_misses"], first["parsed"]) == (0, 6, 6)
    n_edges = conn.execute("SELECT count(*) FROM deltapipe.lineage_edge").fetchone()[0]

    second = scan_json(cli, d)
    assert (second["cache_hits"], second["cache_misses"], second["parsed"]) == (6, 0, 0)
    assert (second["edges_added"], second["edges_removed"]) == (0, 0)  # nothing changed, nothing written
    assert len(second["failed"]) == 2  # failures are cached too, and still reported
    assert conn.execute("SELECT count(*) FROM deltapipe.lineage_edge").fetchone()[0] == n_edges

    # edit one file: one miss; its old edges go, its new ones come
    (d / "views/report.sql").write_text("CREATE VIEW mart.report AS SELECT customer AS who FROM mart.customer_totals;\n")
    third = scan_json(cli, d)
    assert (third["cache_hits"], third["cache_misses"], third["parsed"]) == (5, 1, 1)
    assert third["edges_removed"] > 0
    assert ("mart.enriched", "mart.report") not in edges(conn, "derives")
    assert ("mart.customer_totals", "mart.report") in edges(conn, "derives")
    hits = conn.execute("SELECT sum(hits) FROM deltapipe.parse_cache").fetchone()[0]
    assert hits == 11

    # a copy of a file elsewhere has the same content: a hit, parsed once
    (d / "copy").mkdir()
    (d / "copy/again.sql").write_text((d / "etl/01_ctas.sql").read_text())
    fourth = scan_json(cli, d)
    assert (fourth["cache_hits"], fourth["cache_misses"]) == (7, 0)

    # --clear-cache parses everything again
    fifth = scan_json(cli, d, "--clear-cache")
    assert (fifth["cache_hits"], fifth["cache_misses"], fifth["parsed"]) == (0, 7, 6)
    scans = conn.execute("SELECT cache_hits, cache_misses FROM deltapipe.lineage_scan ORDER BY id").fetchall()
    assert scans == [(0, 6), (6, 0), (5, 1), (7, 0), (0, 7)]


def test_deleted_file_leaves_the_graph(cli, conn, tmp_path):
    d = write_corpus(tmp_path / "sql")
    scan_json(cli, d)
    (d / "views/report.sql").unlink()
    r = scan_json(cli, d)
    assert r["edges_removed"] > 0
    assert not conn.execute("SELECT 1 FROM deltapipe.lineage_node WHERE name LIKE 'mart.report%'").fetchone()
    assert not conn.execute("SELECT 1 FROM deltapipe.lineage_node WHERE name = %s",
                            (str(d / "views/report.sql"),)).fetchone()


def test_pipeline_models_write_the_table_named_after_the_file(cli, conn, tmp_path):
    d = make_pipeline(tmp_path / "p", {
        "by_customer": "-- key: customer\nSELECT customer, sum(amount) AS total FROM orders GROUP BY customer",
        "big": "SELECT customer, total FROM by_customer WHERE total > 10",
    })
    r = scan_json(cli, d)
    assert r["failed"] == [] and r["files"] == 2
    t = edges(conn, "derives")
    assert ("public.orders", "public.by_customer") in t and ("public.by_customer", "public.big") in t
    assert ("public.orders.amount", "public.by_customer.total") in t
    assert ("public.by_customer.total", "public.big.total") in t


def test_show_upstream_downstream_and_depth(cli, tmp_path):
    d = write_corpus(tmp_path / "sql")
    scan_json(cli, d)
    r = cli("lineage", "show", "mart.report", "--upstream")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "upstream table mart.report"
    for name in ("mart.customer_totals", "mart.enriched", "raw.orders", "raw.customers", "raw.fx", "raw.adjust"):
        assert " table %s " % name in r.output, r.output

    one = json.loads(cli("lineage", "show", "mart.report", "--upstream", "--depth", "1", "--json").output)
    assert {x["name"] for x in one["rows"]} == {"mart.customer_totals", "mart.enriched"}
    assert all(x["depth"] == 1 for x in one["rows"])

    down = json.loads(cli("lineage", "show", "raw.fx.rate", "--downstream", "--json").output)
    assert down["start"] == {"kind": "column", "name": "raw.fx.rate"}
    got = {(x["depth"], x["name"]) for x in down["rows"]}
    assert got == {(1, "mart.enriched.value_eur"), (2, "mart.report.total")}
    rows = {x["name"]: x for x in down["rows"]}
    assert rows["mart.report.total"]["via"] == "mart.enriched.value_eur"
    assert rows["mart.report.total"]["file"] == str(d / "views/report.sql")

    leaf = cli("lineage", "show", "raw.fx", "--upstream")
    assert leaf.exit_code == 0 and "(nothing upstream)" in leaf.output


def test_show_errors_are_one_line(cli, tmp_path):
    r = cli("lineage", "show", "nosuch.table")
    assert r.exit_code == 1
    assert r.output.startswith("error: unknown table or column nosuch.table in the lineage graph")
    assert "deltapipe lineage scan DIR" in r.output and r.output.count("\n") == 1
    r = cli("lineage", "scan", tmp_path / "missing")
    assert r.exit_code == 1 and r.output.startswith("error: ") and "is not a directory" in r.output


def test_sql_api_errors_have_codes(conn):
    import psycopg
    with pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT * FROM deltapipe.lineage('x', 'sideways')")
    assert e.value.diag.sqlstate == "DP402"
    with pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT * FROM deltapipe.lineage('x')")
    assert e.value.diag.sqlstate == "DP401" and e.value.diag.message_hint
    with pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT deltapipe.lineage_apply('/tmp/x')")
    assert e.value.diag.sqlstate == "DP403"
