"""`deltapipe docs`: the site of a project's data, written for file:// (-o DIR) or served live (--serve PORT),
and checked in headless Chromium driven over the DevTools protocol: it renders, names every model and column,
shows a column's upstream columns when the column is clicked, searches, fits a phone, and needs no network."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request

import pytest

from chrome_helpers import Chrome, needs_chromium
from jaffle_helpers import MODELS, make_jaffle
from test_report import png_colours

AUDITS = ("-- audit: unique(customer_id)\n"
          "-- audit[warn]: big_spenders: SELECT * FROM this WHERE customer_lifetime_value > 20\n")


def run_id(output: str) -> int:
    return int(re.search(r"run (\d+) done", output).group(1))


@pytest.fixture
def jaffle(cli, tmp_path):
    """jaffle_shop run twice: a first build, then an incremental refresh after a changed payment."""
    d = make_jaffle(tmp_path / "jaffle")
    (d / "models" / "customers.audits.sql").write_text(AUDITS)
    r = cli("run", d, "--no-timeline")
    assert r.exit_code == 0, r.output
    pay = d / "data" / "raw_payments.csv"
    pay.write_text(pay.read_text().replace("5,4,bank_transfer,1700", "5,4,bank_transfer,1900"))
    r2 = cli("run", d, "--no-timeline")
    assert r2.exit_code == 0, r2.output
    return d, [run_id(r.output), run_id(r2.output)]


def site_data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="dp-data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def test_docs_writes_a_self_contained_site(cli, jaffle, tmp_path):
    d, runs = jaffle
    out = tmp_path / "site"
    r = cli("docs", "-o", out)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("wrote %s (8 tables, 38 columns, " % (out / "index.html")), r.output
    page = (out / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and 'name="viewport"' in page
    # nothing fetched from anywhere: no URL, no link/img/iframe/src, no @import or url(...)
    without_ns = page.replace('"http://www.w3.org/2000/svg"', "").replace("'http://www.w3.org/2000/svg'", "")
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", without_ns, re.I), "external reference"
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\((?!#)|fetch\(|XMLHttpRequest", page, re.I)
    data = site_data(page)
    tables = {t["id"]: t for t in data["tables"]}
    assert {t["name"] for t in data["tables"]} == set(MODELS) | {"raw_customers", "raw_orders", "raw_payments"}
    cust = tables["public.customers"]
    assert [c["name"] for c in cust["columns"]] == ["customer_id", "first_name", "last_name", "first_order",
                                                    "most_recent_order", "number_of_orders", "customer_lifetime_value"]
    assert {c["name"]: c["type"] for c in cust["columns"]}["customer_lifetime_value"] == "numeric"
    assert cust["key"] == ["customer_id"] and cust["key_inferred"] is True
    assert cust["refresh"]["incremental"] and cust["refresh"]["summary"] == "incremental (affected keys on customer_id)"
    assert any("GROUP BY" in o for o in cust["refresh"]["operators"])
    assert cust["sql"] == MODELS["customers"]
    assert sorted(cust["upstream"]) == ["public.stg_customers", "public.stg_orders", "public.stg_payments"]
    assert tables["public.raw_payments"]["downstream"] == ["public.stg_payments"]
    # column lineage through the stars of select * from final
    edges = {tuple(e) for e in data["column_edges"]}
    assert ("public.stg_payments", "amount", "public.customers", "customer_lifetime_value") in edges
    assert ("public.raw_payments", "amount", "public.stg_payments", "amount") in edges
    assert {("public.stg_payments", "amount", "public.orders", "credit_card_amount"),
            ("public.stg_payments", "payment_method", "public.orders", "credit_card_amount")} <= edges
    # audits with their last results; the runs of each table; freshness
    audits = {a["name"]: a for a in cust["audits"]}
    assert audits["unique(customer_id)"]["blocking"] and audits["unique(customer_id)"]["last"]["failing_rows"] == 0
    assert not audits["big_spenders"]["blocking"] and audits["big_spenders"]["last"]["failing_rows"] >= 1
    assert [x["run"] for x in cust["runs"]] == runs[::-1]
    assert cust["runs"][0]["strategy"] != "create" and cust["runs"][1]["strategy"] == "create"
    assert tables["public.raw_payments"]["last_change"] and tables["public.customers"]["last_change"]["run"] == runs[1]
    assert tables["public.raw_customers"]["last_change"]["run"] < runs[1]  # unchanged by the second run
    # run pages link the run reports, written beside the page
    assert {r["id"] for r in data["runs"]} >= set(runs)
    for r in data["runs"]:
        report = out / "runs" / ("run-%d.html" % r["id"])
        assert report.exists() and report.read_text().startswith("<!DOCTYPE html>")
    # a second write replaces the site
    assert cli("docs", "jaffle", "-o", out).exit_code == 0


def test_docs_errors(cli, jaffle, tmp_path):
    r = cli("docs")
    assert r.exit_code == 1 and r.output == "error: give either -o DIR or --serve PORT; hint: deltapipe docs -o site/  or  deltapipe docs --serve 8080\n"
    r = cli("docs", "-o", tmp_path / "s", "--serve", "0")
    assert r.exit_code == 1 and "give either -o DIR or --serve PORT" in r.output
    r = cli("docs", "nosuch", "-o", tmp_path / "s")
    assert r.exit_code == 1 and r.output.startswith("error: unknown pipeline nosuch; deployed: jaffle; hint: ")
    f = tmp_path / "file"
    f.write_text("x")
    r = cli("docs", "-o", f)
    assert r.exit_code == 1 and r.output.startswith("error: %s is not a directory" % f), r.output
    assert r.output.count("\n") == 1


def test_docs_serve_reads_the_live_catalog(dsn, cli, jaffle):
    from deltapipe.ops.site import make_server
    d, runs = jaffle
    srv = make_server(dsn, None, 0)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    base = "http://127.0.0.1:%d" % srv.server_address[1]
    try:
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy

        def get(path):
            try:
                with direct.open(base + path, timeout=30) as resp:
                    return resp.status, resp.headers["Content-Type"], resp.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.headers["Content-Type"], e.read().decode()
        status, ctype, page = get("/")
        assert status == 200 and ctype.startswith("text/html")
        data = site_data(page)
        assert data["live"] is True
        assert [r["id"] for r in data["runs"] if r["kind"] == "pipeline"] == runs[::-1]
        assert {r["dataset"] for r in data["runs"] if r["kind"] == "load"} == {"raw_customers", "raw_orders", "raw_payments"}
        status, _, report = get("/runs/run-%d.html" % runs[0])
        assert status == 200 and "deltapipe run %d" % runs[0] in report
        assert get("/runs/run-999999.html")[0] == 404
        assert get("/nope")[0] == 404
        # live: a new run shows on the next request
        r = cli("run", d, "--no-timeline")
        assert r.exit_code == 0
        assert run_id(r.output) in [x["id"] for x in site_data(get("/")[2])["runs"]]
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(10)


@needs_chromium
def test_site_in_headless_chromium(cli, jaffle, tmp_path):
    d, runs = jaffle
    out = tmp_path / "site"
    assert cli("docs", "-o", out).exit_code == 0
    url = (out / "index.html").as_uri()
    with Chrome(tmp_path / "profile", 1280, 900) as c:
        c.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1)
        c.navigate(url)
        shot = c.screenshot()
        assert png_colours(shot) > 8, "screenshot looks blank"
        text = c.eval("document.body.innerText")
        for t in MODELS:
            assert re.search(r"\b%s\b" % t, text), t
        expected = {(t["id"], x["name"]) for t in site_data((out / "index.html").read_text())["tables"] for x in t["columns"]}
        assert len(expected) == 38
        for _t, col in expected:
            assert re.search(r"\b%s\b" % re.escape(col), text), col
        # every column of every table is on the project page, in its table's row
        chips = c.eval("[...document.querySelectorAll('a.chip')].map(a => [decodeURIComponent(a.getAttribute('href')"
                       ".split('/')[2]), a.innerText])")
        assert {tuple(x) for x in chips} == expected
        assert c.eval("document.querySelectorAll('svg.g .node').length") == 8  # the whole DAG

        # a table page; a click on a column shows its upstream columns
        c.navigate(url + "#/table/public.customers")
        assert c.eval("document.querySelector('h1').innerText") == "customers"
        assert c.eval("document.getElementById('column-lineage')") is None
        c.click('a.col[data-col="customer_lifetime_value"]')
        panel = c.eval("document.getElementById('column-lineage').innerText")
        assert "Upstream columns (2)" in panel
        ups = c.eval("[...document.querySelectorAll('#column-lineage ul.up li')].map(e => e.dataset.col)")
        assert ups == ["public.stg_payments.amount", "public.raw_payments.amount"]
        assert c.eval("location.hash") == "#/table/public.customers/customer_lifetime_value"
        # and from there to the upstream column's own page
        c.click('#column-lineage ul.up li[data-col="public.raw_payments.amount"] a')
        assert c.eval("document.querySelector('h1').innerText") == "raw_payments"
        down = c.eval("[...document.querySelectorAll('#column-lineage ul.down li')].map(e => e.dataset.col)")
        assert down == ["public.stg_payments.amount", "public.customers.customer_lifetime_value",
                        "public.orders.amount", "public.orders.bank_transfer_amount",
                        "public.orders.coupon_amount", "public.orders.credit_card_amount",
                        "public.orders.gift_card_amount"]

        # the search box finds columns; Enter opens the first
        c.click("#search")
        c.call("Input.insertText", text="lifetime")
        hits = c.eval("[...document.querySelectorAll('#results a')].map(a => a.innerText)")
        assert hits and "customers.customer_lifetime_value" in hits[0]
        c.call("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter", windowsVirtualKeyCode=13)
        c.call("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter", windowsVirtualKeyCode=13)
        c.settle()
        assert c.eval("location.hash") == "#/table/public.customers/customer_lifetime_value"

        # a DAG node opens its table; a run page links its report, which opens from file:// too
        c.navigate(url + "#/")
        c.click('svg.g a[href="#/table/public.stg_orders"] rect')
        assert c.eval("document.querySelector('h1').innerText") == "stg_orders"
        c.navigate(url + "#/run/%d" % runs[1])
        assert c.eval("document.getElementById('report-link').getAttribute('href')") == "runs/run-%d.html" % runs[1]
        c.events = [e for e in c.events if e[0] != "Page.loadEventFired"]
        c.click("#report-link", navigates=True)
        assert c.eval("document.title") == "deltapipe run %d \u2014 pipeline jaffle" % runs[1]

        assert c.exceptions() == []
        assert c.requests() and all(u.startswith("file://") for u in c.requests()), c.requests()

    # a phone: the page fits its width, the table list folds away behind the menu button
    with Chrome(tmp_path / "profile-phone", 390, 844) as c:
        c.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
        c.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1)
        c.navigate(url + "#/table/public.orders/credit_card_amount")
        assert c.eval("document.documentElement.scrollWidth <= innerWidth")
        assert c.eval("getComputedStyle(document.getElementById('nav')).display") == "none"
        assert png_colours(c.screenshot()) > 8
        assert "stg_payments.payment_method" in c.eval("document.getElementById('column-lineage').innerText")
        c.click("#menu")
        assert c.eval("getComputedStyle(document.getElementById('nav')).display") == "block"
        assert c.exceptions() == []


def test_docs_of_a_catalog_without_pipelines(cli, conn, tmp_path):
    """Datasets only (no pipeline deployed): their pages, no DAG edges, no runs of pipelines."""
    assert cli("dataset", "create", "visits", "--key", "id", "--columns", "id bigint, page text").exit_code == 0
    r = cli("docs", "-o", tmp_path / "site")
    assert r.exit_code == 0, r.output
    (visits,) = site_data((tmp_path / "site" / "index.html").read_text())["tables"]
    assert visits["exists"] is False and visits["columns"] == [{"name": "id", "type": "bigint"},
                                                               {"name": "page", "type": "text"}]
    (tmp_path / "v.csv").write_text("id,page\n1,/a\n2,/b\n")
    assert cli("load", "visits", tmp_path / "v.csv").exit_code == 0
    conn.execute("COMMENT ON COLUMN public.visits.page IS 'the path visited'")
    r = cli("docs", "-o", tmp_path / "site")
    assert r.exit_code == 0, r.output
    data = site_data((tmp_path / "site" / "index.html").read_text())
    assert data["pipelines"] == [] and data["column_edges"] == []
    assert [(r["kind"], r["dataset"]) for r in data["runs"]] == [("load", "visits")]
    (visits,) = data["tables"]
    assert visits["rows"] == 2 and visits["last_change"]["run"] == data["runs"][0]["id"]
    assert visits["kind"] == "dataset" and visits["key"] == ["id"]
    assert visits["columns"][1] == {"name": "page", "type": "text", "not_null": False, "comment": "the path visited"}
    assert cli("docs", "nosuch", "-o", tmp_path / "site").output.startswith("error: unknown pipeline nosuch; deployed: none")
