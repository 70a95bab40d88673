"""`deltapipe demo`: the story (sources, a pipeline of models, a changed file, incremental refresh, changes, a reject,
a rollback, the HTML report) runs against the test database, twice in a row."""

from __future__ import annotations

import re

from deltapipe.ops import demo as demo_mod


def _check_story(out: str, workdir) -> None:
    # first run builds every model, second run refreshes each one incrementally, writing a few rows
    assert re.search(r"^== 3\. First run", out, re.M), out
    for model, written, rows in (("order_lines", 8, 5001), ("customer_revenue", 8, 250), ("country_mart", 4, 8)):
        assert re.search(r"^\s+%s\s+full \(first build\)" % model, out, re.M), out
        assert re.search(r"^\s+%s\s+incremental\s+%d\s+%d\b" % (model, written, rows), out, re.M), out
    assert re.search(r"^\s+demo_customers\s+skipped", out, re.M), out     # unchanged file: not loaded again
    assert re.search(r"^\s+demo_orders\s+loaded\s+8\s+5001\s+\(\+2 ~5 -1\)", out, re.M), out
    # what changed: the dataset's changes and the mart's
    assert re.search(r"dataset demo_orders: 8 changes in run \d+", out), out
    assert re.search(r'U \{"id": 101\}\s+amount 422\.0 -> 432\.0', out), out
    assert re.search(r'D \{"id": 777\}\s+deleted, was', out), out
    assert re.search(r"model demo\.country_mart: 4 changes in run \d+", out), out
    # the reject, with its line, the raw line and the reason
    assert re.search(r'reject: line 5003\s+column amount\s+22P02\s+invalid input syntax for type numeric: "n/a"', out), out
    assert "| 5003,9,n/a,2024-07-02" in out, out
    # the rollback puts every table back
    assert re.search(r"rolled back run \d+ first", out), out
    assert re.search(r"demo\.country_mart: 4 rows restored", out), out
    assert re.search(r"^\s+demo\.orders\s+5000 rows\s+5001 rows\s+5000 rows\s+yes$", out, re.M), out
    assert "every table is back to its content after the first run: yes" in out, out
    # the report, and where it is
    report = workdir.resolve() / "report.html"
    assert "wrote %s (5 nodes" % report in out, out
    assert report.read_text().startswith("<!DOCTYPE html>")


def test_demo_tells_the_story_twice(cli, conn, tmp_path):
    workdir = tmp_path / "demo"
    for attempt in (1, 2):   # re-runnable: the second demo starts from a clean slate again
        r = cli("demo", "--dir", workdir)
        assert r.exit_code == 0, r.output
        _check_story(r.output, workdir)
        (workdir / "report.html").unlink()
    # the database agrees with what was printed
    runs = conn.execute("SELECT id, status FROM deltapipe.run WHERE pipeline = 'demo' ORDER BY id").fetchall()
    assert [s for _, s in runs] == ["done", "rolled_back"] * 2
    nodes = dict(conn.execute("SELECT node, coalesce(strategy, '') FROM deltapipe.node_run WHERE run_id = %s "
                              "AND node_kind = 'model'", (runs[-1][0],)).fetchall())
    assert nodes == {m: "incremental" for m in demo_mod.MODELS}
    assert conn.execute("SELECT count(*) FROM demo.orders").fetchone()[0] == demo_mod.N_ORDERS
    assert conn.execute("SELECT count(*) FROM deltapipe.pipeline WHERE name = 'demo'").fetchone()[0] == 1


def test_demo_generates_the_described_change():
    customers, orders = demo_mod.generate()
    assert (len(customers), len(orders)) == (demo_mod.N_CUSTOMERS, demo_mod.N_ORDERS)
    assert demo_mod.generate() == (customers, orders)   # deterministic
    v2 = demo_mod.changed_orders(orders)
    old, new = {o[0]: o for o in orders}, {o[0]: o for o in v2}
    assert set(old) - set(new) == {demo_mod.DELETED}
    assert set(new) - set(old) == set(demo_mod.INSERTED) | {demo_mod.BAD}
    assert sorted(k for k in set(old) & set(new) if old[k] != new[k]) == sorted(demo_mod.UPDATED)
