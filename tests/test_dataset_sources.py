"""Every dataset is a source: a model reading a dataset that its pipeline does not declare (loaded by
`deltapipe load`, by `CALL deltapipe.load` from another application) refreshes from the dataset's
changes, and plan says so from the first deploy. Loads that commit while a run reads are read by
the next refresh exactly once, whatever order they commit in. Real PostgreSQL."""

from __future__ import annotations

import threading

import psycopg

from pipeline_helpers import make_pipeline
from test_incremental import mismatches, node_strategies

MODELS = {
    "big_orders": "SELECT id, customer, amount FROM orders WHERE amount > 2",
    "per_customer": "SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer",
    "named": "SELECT o.id, o.amount, c.region FROM orders o JOIN customers c ON c.name = o.customer",
}


def _sql_load(dsn, dataset, lines, mode="upsert", **options):
    """Another application's load: stage, COPY raw lines, CALL deltapipe.load."""
    import json
    with psycopg.connect(dsn) as c:
        stg = c.execute("SELECT deltapipe.stage(%s)", (dataset,)).fetchone()[0]
        with c.cursor().copy("COPY %s (_dp_raw) FROM STDIN" % stg) as cp:
            cp.write("\n".join(lines) + "\n")
        res = c.execute("CALL deltapipe.load(%s, %s, %s)",
                        (dataset, stg, json.dumps({"mode": mode, **options}))).fetchone()[0]
        assert res["status"] == "done", res


def _setup(cli, dsn, tmp_path):
    (tmp_path / "orders.csv").write_text("id,customer,amount\n" + "".join(
        "%d,c%d,%d\n" % (i, i % 5, i % 7) for i in range(1, 101)))
    assert cli("dataset", "create", "orders", "--key", "id", "--columns",
               "id bigint, customer text, amount numeric").exit_code == 0
    assert cli("load", "orders", tmp_path / "orders.csv").exit_code == 0
    with psycopg.connect(dsn) as c:
        c.execute("SELECT deltapipe.create_dataset('customers', ARRAY['name'], 'name text, region text')")
    _sql_load(dsn, "customers", ["name,region"] + ["c%d,r%d" % (i, i % 2) for i in range(5)])
    # a pipeline with no [[sources]]: both datasets are read by name
    return make_pipeline(tmp_path / "p", MODELS, sources="", name="shop")


def test_datasets_loaded_outside_the_pipeline_are_sources(cli, conn, dsn, tmp_path):
    d = _setup(cli, dsn, tmp_path)
    r = cli("plan", d)
    assert r.exit_code == 0, r.output
    assert "external" not in r.output and "not known" not in r.output, r.output
    assert r.output.count("refresh: incremental") == 3, r.output
    r = cli("dag", d)
    assert "orders (source)" in r.output, r.output
    assert cli("run", d, "--no-timeline").exit_code == 0
    # a change by the CLI and one by SQL, then a run: every model refreshes from the changes
    (tmp_path / "orders2.csv").write_text("id,customer,amount\n1,c4,50\n2,c1,0\n101,c2,9\n")
    assert cli("load", "orders", tmp_path / "orders2.csv", "--mode", "upsert").exit_code == 0
    _sql_load(dsn, "customers", ["name,region", "c1,r9"])
    r = cli("run", d, "--no-timeline")
    assert r.exit_code == 0, r.output
    st = node_strategies(conn)
    assert {n: st[n][1] for n in MODELS} == {n: "incremental" for n in MODELS}, st
    assert mismatches(conn, "shop") == []
    # rows written follow the change, not the table
    rows = dict(conn.execute("SELECT node, inserted + updated + deleted FROM deltapipe.node_run "
                             "WHERE run_id = (SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline')").fetchall())
    assert rows["named"] <= 25 and rows["big_orders"] <= 3, rows


def test_loads_racing_runs_are_read_exactly_once(cli, conn, dsn, tmp_path):
    """Loads (by SQL, each its own transaction) commit while runs refresh: after the last run every
    model equals its full recompute (a change read twice would double per_customer's sums, one
    missed would stay missing), and the runs were incremental."""
    d = _setup(cli, dsn, tmp_path)
    assert cli("run", d, "--no-timeline").exit_code == 0
    stop = threading.Event()
    errors: list = []
    loads = [0]

    def loader():
        k = 0
        while not stop.is_set():
            k += 1
            try:
                _sql_load(dsn, "orders", ["id,customer,amount"] + ["%d,c%d,%d" % ((k * 7 + j) % 150 + 1, (k + j) % 6, k % 9)
                                                                   for j in range(3)])
                loads[0] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                return
    t = threading.Thread(target=loader)
    t.start()
    try:
        incremental = 0
        for _ in range(6):
            r = cli("run", d, "--no-timeline", "--incremental-threshold", "1")
            assert r.exit_code == 0, r.output
            incremental += node_strategies(conn)["per_customer"][1] == "incremental"
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors
    assert loads[0] >= 3
    r = cli("run", d, "--no-timeline", "--incremental-threshold", "1")
    assert r.exit_code == 0, r.output
    assert mismatches(conn, "shop") == []
    assert incremental >= 3


def test_positions_read_a_late_commit_exactly_once(conn):
    """deltapipe._changes_range with positions (sequence number, snapshot): a writer A that takes a
    lower sequence number but commits after writer B, whose higher number a refresh already passed,
    is read by the next refresh, and nothing is read twice. (deltapipe's loads of one dataset are
    serialized by a lock on the dataset; writers that are not, as statement triggers of tracked
    tables, are why positions carry snapshots.)"""
    conn.execute("INSERT INTO deltapipe.run (kind, trigger, status) VALUES ('load', 'sql', 'done')")
    run = conn.execute("SELECT max(id) FROM deltapipe.run").fetchone()[0]
    ins = "INSERT INTO deltapipe.changeset (run_id, node, op, key) VALUES (%s, 'n', 'I', %s) RETURNING seq"
    a = psycopg.connect(conn.info.dsn)
    a_seq = a.execute(ins, (run, '{"id": 1}')).fetchone()[0]          # A: open, lower number
    b_seq = conn.execute(ins, (run, '{"id": 2}')).fetchone()[0]       # B: committed, higher number
    assert a_seq < b_seq

    def position():
        return conn.execute("SELECT coalesce(max(seq), 0), pg_current_snapshot()::text FROM deltapipe.changeset "
                            "WHERE node = 'n'").fetchone()

    def read(lo, prev, hi, cur):
        cond = conn.execute("SELECT deltapipe._changes_range(%s, %s, %s, %s)", (lo, hi, prev, cur)).fetchone()[0]
        return sorted(r[0] for r in conn.execute(
            "SELECT (key->>'id')::int FROM deltapipe.changeset c WHERE c.node = 'n' AND " + cond).fetchall())
    hi1, snap1 = position()
    assert hi1 == b_seq
    assert read(0, None, hi1, snap1) == [2]           # the first refresh: B only (A is not committed)
    a.commit()
    a.close()
    hi2, snap2 = position()
    assert hi2 == hi1                                   # no higher number: a sequence alone would miss A
    assert read(hi1, snap1, hi2, snap2) == [1]          # the next refresh reads A, and only A
    hi3, snap3 = position()
    assert read(hi2, snap2, hi3, snap3) == []           # and the one after reads nothing again


def test_models_over_undeclared_datasets_equal_recompute_after_random_loads(cli, conn, dsn, tmp_path):
    """Property: datasets the pipeline does not declare, changed by random batches loaded alternately
    by the CLI (`deltapipe load`) and by SQL (`CALL deltapipe.load`), with NULLs, customer moves and
    deletes (changes mode); after every run each model equals its recompute."""
    import os

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    models = dict(MODELS)
    models["mart"] = ("select c.name, c.region, x.n, x.total from customers c\n"
                      "left join (select customer, count(*) as n, sum(amount) as total from orders group by customer) x\n"
                      "  on x.customer = c.name")
    d = _setup(cli, dsn, tmp_path)
    for f in (d / "models").glob("*.sql"):
        f.unlink()
    for n, sql in models.items():
        (d / "models" / (n + ".sql")).write_text(sql)
    assert cli("run", d, "--no-timeline").exit_code == 0
    op = st.tuples(st.sampled_from(["upsert", "delete"]), st.integers(1, 110),
                   st.sampled_from(["c0", "c1", "c2", "c7", None]), st.one_of(st.none(), st.integers(0, 9)))
    cop = st.tuples(st.sampled_from(["upsert", "delete"]), st.sampled_from(["c0", "c1", "c2", "c7"]),
                    st.sampled_from(["r0", "r1", None]))
    batches = st.lists(st.tuples(st.lists(op, max_size=6), st.lists(cop, max_size=2), st.booleans()),
                       min_size=1, max_size=3)
    k = [0]

    @settings(max_examples=int(os.environ.get("DELTAPIPE_HYPOTHESIS_EXAMPLES", "8")), deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(batches)
    def prop(bs):
        for orders, custs, by_cli in bs:
            k[0] += 1
            olines = ["op,id,customer,amount"] + ["%s,%d,%s,%s" % (o, i, c or "", "" if a is None else a)
                                                  for o, i, c, a in orders]
            clines = ["op,name,region"] + ["%s,%s,%s" % (o, n, r or "") for o, n, r in custs]
            if by_cli:
                p = tmp_path / ("o%d.csv" % k[0])
                p.write_text("\n".join(olines) + "\n")
                r = cli("load", "orders", p, "--mode", "changes", "--op-column", "op")
                assert r.exit_code == 0, r.output
            else:
                _sql_load(dsn, "orders", olines, mode="changes", op_column="op")
            _sql_load(dsn, "customers", clines, mode="changes", op_column="op")
            r = cli("run", d, "--no-timeline", "--incremental-threshold", "1")
            assert r.exit_code == 0, r.output
            st_ = node_strategies(conn)
            seen.update(m for m in ("named", "mart", "per_customer") if st_[m][1] == "incremental")
            bad = mismatches(conn, "shop")
            assert bad == [], bad
    seen: set = set()
    prop()
    assert seen == {"named", "mart", "per_customer"}, seen
