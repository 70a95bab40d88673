"""Scale-out on Citus: datasets and models distributed by their key give the same content as on one
server (each test loads the same files into a distributed dataset and into a plain one on the
coordinator, and compares), stay distributed and co-located after merges and swaps, and roll back.

The cluster (a coordinator and two workers, tests/citus_helpers.py) is started once for this module;
the tests skip when the citus extension is not installed. The last test runs without Citus: asking
for a distributed dataset there is a clear error.
"""

from __future__ import annotations

import os
import random

import psycopg
import pytest
from click.testing import CliRunner

from citus_helpers import CitusCluster, citus_available
from deltapipe.install import install

CITUS, WHY = citus_available()


@pytest.fixture(scope="module")
def citus_dsn():
    if not CITUS:
        pytest.skip(WHY)
    cluster = CitusCluster()
    cluster.start()
    db = "dpcitus_%d" % os.getpid()
    dsn = cluster.create_database(db)
    install(dsn)
    yield dsn
    cluster.drop_database(db)
    if cluster.started_here and not os.environ.get("DELTAPIPE_TEST_KEEP_SERVER"):
        cluster.stop()


@pytest.fixture
def ccli(citus_dsn):
    """The CLI against the Citus coordinator: ccli('load', 'ds', path)."""
    from deltapipe.cli import main
    runner = CliRunner()

    def run(*args, ok=True):
        r = runner.invoke(main, [str(a) for a in args], env={"DELTAPIPE_DSN": citus_dsn}, catch_exceptions=False)
        if ok:
            assert r.exit_code == 0, r.output
        return r
    return run


@pytest.fixture
def cq(citus_dsn):
    with psycopg.connect(citus_dsn, autocommit=True) as c:
        def q(sql, args=None):
            cur = c.execute(sql, args)
            return cur.fetchall() if cur.description else None
        yield q


def _csv(rows, op=False):
    head = "id,name,amount" + (",op" if op else "")
    return head + "\n" + "".join("%d,%s,%s%s\n" % (i, n, a, ",%s" % o[0] if op else "") for i, n, a, *o in rows)


def _versions(n=300, seed=7):
    """v1; v2 with 1% changed (merge); v3 with half the rows changed, some gone, some new (swap);
    v4 with a row that does not cast (rejected) and a few changes."""
    rnd = random.Random(seed)
    v1 = {i: ("n%d" % i, rnd.randint(0, 1000)) for i in range(1, n + 1)}
    v2 = dict(v1)
    for i in rnd.sample(sorted(v2), n // 100):
        v2[i] = (v2[i][0] + "x", v2[i][1] + 1)
    v3 = {i: (v[0], v[1] + (1 if i % 2 else 0)) for i, v in v2.items() if i % 7}
    v3.update({i: ("new%d" % i, i) for i in range(n + 1, n + 30)})
    v4 = dict(v3)
    for i in rnd.sample(sorted(v4), 5):
        v4[i] = ("changed", -1)
    return [sorted((i, *v) for i, v in d.items()) for d in (v1, v2, v3, v4)]


def _content(cq, table, cols="id, name, amount, _dp_hash"):
    return cq("SELECT %s FROM %s t ORDER BY %s" % (cols, table, "t::text" if cols == "*" else cols))


def _distributed(cq, table):
    r = cq("SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = %s::regclass", (table,))
    return r[0][0] if r else None


@pytest.mark.parametrize("mode", ["snapshot", "upsert", "append", "changes", "history"])
def test_loads_into_a_distributed_dataset_match_one_server(ccli, cq, tmp_path, mode):
    """Every load mode, with merges, a swap, rejects and a rollback: the distributed table has exactly
    the rows (and row hashes) of the same loads on one server, and stays distributed by the key and
    co-located with the other bigint-keyed tables."""
    op = mode == "changes"
    for name, dist in (("dist_" + mode, ["--distributed"]), ("plain_" + mode, [])):
        ccli("dataset", "create", name, "--key", "id", "--columns", "id bigint, name text, amount int",
             "--mode", mode, *dist)
    files = []
    for i, rows in enumerate(_versions()):
        if op:
            rows = [(r[0], r[1], r[2], "upsert") for r in rows] + ([(5, "x", 1, "delete"), (6, "x", 1, "delete")] if i else [])
        text = _csv(rows, op)
        if i == 3:
            text += "999999,bad,notanumber%s\n" % (",upsert" if op else "")
        p = tmp_path / ("v%d.csv" % (i + 1))
        p.write_text(text)
        files.append(p)
    colocation = None
    strategies = []
    for f in files:
        res = [ccli("load", name, f, ok=False) for name in ("dist_" + mode, "plain_" + mode)]
        outs = [r.output for r in res]
        assert res[0].exit_code == res[1].exit_code == 0, outs
        strategies.append(outs[0].split("mode, ")[1].split(")")[0] if "mode, " in outs[0] else "refused")
        assert _content(cq, "dist_" + mode) == _content(cq, "plain_" + mode)
        c = _distributed(cq, "dist_" + mode)
        assert c is not None, "dist_%s is no longer distributed after %s" % (mode, f.name)
        assert colocation in (None, c)
        colocation = c
        assert _distributed(cq, "plain_" + mode) is None
    assert strategies[0] == "create" and "merge" in strategies, strategies
    if mode in ("snapshot", "history"):
        assert strategies[:3] == ["create", "merge", "swap"], strategies
    # rejects are recorded the same way
    rej = cq("""SELECT n.node, count(r.*) FROM deltapipe.node_run n LEFT JOIN deltapipe.reject r ON r.node_run_id = n.id
                WHERE n.node IN (%s, %s) GROUP BY n.node ORDER BY 1""", ("dist_" + mode, "plain_" + mode))
    assert rej[0][1] == rej[1][1] and rej[0][1] >= 1
    if mode == "history":
        hist = "id, name, amount, valid_to IS NULL"
        assert _content(cq, "dist_history_history", hist) == _content(cq, "plain_history_history", hist)
    # the last load rolled back on both: the same content again, still distributed
    for name in ("dist_" + mode, "plain_" + mode):
        run = cq("SELECT max(run_id) FROM deltapipe.node_run WHERE node = %s AND status = 'done' AND inserted + updated + deleted > 0",
                 (name,))[0][0]
        ccli("rollback", run)
    assert _content(cq, "dist_" + mode) == _content(cq, "plain_" + mode)
    assert _distributed(cq, "dist_" + mode) == colocation
    checks = cq("SELECT name, row_count, checksum FROM deltapipe.dataset WHERE name IN (%s, %s) ORDER BY name DESC",
                ("plain_" + mode, "dist_" + mode))
    assert checks[0][1:] == checks[1][1:]


def test_distributing_an_existing_dataset_and_an_empty_table_made_by_hand(ccli, cq, tmp_path):
    """`dataset set --distributed` distributes a loaded target in place; a dataset whose (empty) table
    was created and distributed by hand is loaded into (adopted) as it is."""
    rows = _versions(100)
    p1, p2 = tmp_path / "v1.csv", tmp_path / "v2.csv"
    p1.write_text(_csv(rows[0]))
    p2.write_text(_csv(rows[2]))
    ccli("dataset", "create", "later", "--key", "id", "--columns", "id bigint, name text, amount int")
    ccli("load", "later", p1)
    assert _distributed(cq, "later") is None
    out = ccli("dataset", "set", "later", "--distributed").output
    assert "distributed true" in out
    assert _distributed(cq, "later") is not None
    ccli("load", "later", p2)
    ccli("dataset", "create", "byhand", "--key", "id", "--columns", "id bigint, name text, amount int")
    cq("CREATE TABLE public.byhand (id bigint PRIMARY KEY, name text, amount int, _dp_hash bigint NOT NULL)")
    cq("SELECT create_distributed_table('public.byhand', 'id', colocate_with => 'later')")
    ccli("load", "byhand", p1)
    ccli("load", "byhand", p2)
    assert _content(cq, "byhand") == _content(cq, "later")
    assert _distributed(cq, "byhand") == _distributed(cq, "later")
    # the option cannot be removed from a distributed table
    r = ccli("dataset", "set", "later", "--no-distributed", ok=False)
    assert r.exit_code == 1 and "undistribute_table" in r.output


def test_distributed_needs_citus(cli):
    """Without the citus extension, a distributed dataset is refused with DP045 and a hint."""
    r = cli("dataset", "create", "d", "--key", "id", "--columns", "id bigint, v text", "--distributed")
    assert r.exit_code == 1
    assert "citus extension is not installed" in r.output and "CREATE EXTENSION citus" in r.output
    r = cli("dataset", "list")
    assert "no datasets yet" in r.output  # the create rolled back whole


def _orders(path, n, seed, drop_every=0, bump_every=0):
    rnd = random.Random(seed)
    lines = ["id,customer_id,amount,status"]
    for i in range(1, n + 1):
        c, a, s = rnd.randint(1, 60), rnd.randint(1, 500), rnd.choice(["open", "closed"])
        if drop_every and i % drop_every == 0:
            continue
        if bump_every and i % bump_every == 0:
            a, s = a + 7, "open"
        lines.append("%d,%d,%d,%s" % (i, c, a, s))
    path.write_text("\n".join(lines) + "\n")


def test_distributed_models_refresh_and_roll_back(ccli, cq, tmp_path):
    """Sources and models distributed (pipeline.toml): the first build, a refresh that merges, one
    that swaps and a rollback of a run leave every model equal to its full recompute, distributed by its
    key and co-located with the sources; the join of two co-located sources runs shard by shard."""
    root = tmp_path / "cshop"
    (root / "models").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "pipeline.toml").write_text("""name = "cshop"
[[sources]]
dataset = "c_orders"
file = "data/orders.csv"
key = "id"
columns = "id bigint, customer_id bigint, amount numeric, status text"
distributed = true
[[sources]]
dataset = "c_ship"
file = "data/ship.csv"
key = "id"
columns = "id bigint, carrier text"
distributed = true
[models.open_orders]
distributed = true
[models.order_ship]
distributed = true
[models.by_customer]
distributed = true
""")
    (root / "models" / "open_orders.sql").write_text(
        "-- key: id\nSELECT id, customer_id, amount FROM c_orders WHERE status = 'open'\n")
    (root / "models" / "order_ship.sql").write_text(
        "-- key: id\nSELECT o.id, o.amount, s.carrier FROM c_orders o JOIN c_ship s ON s.id = o.id\n")
    (root / "models" / "by_customer.sql").write_text(
        "-- key: customer_id\nSELECT customer_id, count(*) AS n, sum(amount) AS total FROM c_orders GROUP BY customer_id\n")
    (root / "data" / "ship.csv").write_text("id,carrier\n" + "".join("%d,%s\n" % (i, "ups" if i % 3 else "dhl")
                                                                     for i in range(1, 1500, 2)))
    orders = root / "data" / "orders.csv"
    _orders(orders, 1500, 1)
    ccli("deploy", root)
    ccli("run", root, "--no-timeline")
    models = ("open_orders", "order_ship", "by_customer")
    groups = {_distributed(cq, t) for t in ("c_orders", "c_ship") + models}
    assert len(groups) == 1 and None not in groups, groups
    assert "3 model(s) equal" in ccli("verify", "-p", "cshop").output
    # a small change refreshed from the changes: the row models through DELETE + INSERT ... ON CONFLICT, the
    # aggregate's changed groups deleted and inserted by key, each routed shard by shard (no ctid, no MERGE)
    _orders(orders, 1500, 1, drop_every=89, bump_every=45)
    ccli("run", root, "--no-timeline")
    st = {n: (s, w) for n, s, w in cq("SELECT node, strategy, full_because FROM deltapipe.node_run WHERE run_id = "
                                      "(SELECT max(id) FROM deltapipe.run WHERE pipeline = 'cshop')")}
    assert all(st[m][0] == "incremental" for m in models), st
    assert "3 model(s) equal" in ccli("verify", "-p", "cshop").output
    assert {_distributed(cq, t) for t in models} == groups
    # a small change: each model merges its net change (the full-refresh path: --incremental-threshold 0)
    _orders(orders, 1500, 1, drop_every=97, bump_every=50)
    out = ccli("run", root, "--no-timeline", "--incremental-threshold", "0").output
    assert "merge" in out, out
    assert "3 model(s) equal" in ccli("verify", "-p", "cshop").output
    before = {m: _content(cq, m, "*") for m in models}
    changes = cq("SELECT count(*) FROM deltapipe.model m, deltapipe.changes(m.pipeline, m.name, NULL) c WHERE m.name = 'open_orders'")
    assert changes[0][0] > 0  # the net change is in the model's change log
    # a large change: swapped in, still distributed and co-located
    _orders(orders, 1500, 2)
    out = ccli("run", root, "--no-timeline", "--incremental-threshold", "0").output
    assert "swap" in out, out
    assert "3 model(s) equal" in ccli("verify", "-p", "cshop").output
    assert {_distributed(cq, t) for t in ("c_orders",) + models} == groups
    # the join of the two co-located sources is pushed down to the shards
    plan = "\n".join(r[0] for r in cq("EXPLAIN SELECT o.id, s.carrier FROM c_orders o JOIN c_ship s ON s.id = o.id"))
    assert "Task Count: 8" in plan and ("Hash Join" in plan or "Merge Join" in plan), plan
    # the last run rolled back: every model as it was
    run = cq("SELECT max(id) FROM deltapipe.run WHERE pipeline = 'cshop'")[0][0]
    ccli("rollback", run, "--cascade")
    assert {m: _content(cq, m, "*") for m in models} == before
    assert {_distributed(cq, t) for t in ("c_orders",) + models} == groups
    assert "tables analyzed" in ccli("maintain").output


def test_pipeline_toml_distributed_models_are_checked(tmp_path):
    """[models.NAME] distributed must be a boolean, on a model that has a key (no database needed)."""
    from deltapipe.errors import DeltapipeError
    from deltapipe.pipeline.project import read_pipeline
    from pipeline_helpers import make_pipeline
    models = {"keyed": "-- key: id\nSELECT id, amount FROM orders\n", "keyless": "SELECT id, amount FROM orders\n"}
    root = make_pipeline(tmp_path / "a", models)
    with open(root / "pipeline.toml", "a") as f:
        f.write('[models.keyed]\ndistributed = true\n')
    p = read_pipeline(root)
    assert p.config()["distributed"] == ["keyed"]
    for extra, msg in (('[models.keyed]\ndistributed = "yes"\n', "must be true or false"),
                       ('[models.keyless]\ndistributed = true\n', "needs a key")):
        root = make_pipeline(tmp_path / ("b%d" % len(msg)), models)
        with open(root / "pipeline.toml", "a") as f:
            f.write(extra)
        with pytest.raises(DeltapipeError) as e:
            read_pipeline(root)
        assert e.value.sqlstate == "DP214" and msg in str(e.value)


def test_distributed_model_needs_citus(cli, tmp_path):
    """Without the citus extension, a model declared distributed fails its refresh with DP045."""
    from pipeline_helpers import make_pipeline
    root = make_pipeline(tmp_path / "p", {"big": "-- key: id\nSELECT id, amount FROM orders WHERE amount > 6\n"})
    with open(root / "pipeline.toml", "a") as f:
        f.write('[models.big]\ndistributed = true\n')
    assert cli("deploy", root).exit_code == 0
    r = cli("run", root, "--no-timeline")
    assert r.exit_code == 1 and "citus extension is not installed" in r.output, r.output


def test_composite_key_is_distributed_by_its_first_column(ccli, cq, tmp_path):
    """A key of two columns: the table is distributed by the first; merges and a swap give the rows of
    one server."""
    files = []
    for v, (n, bump) in enumerate(((200, 0), (200, 50), (150, 2))):
        p = tmp_path / ("k%d.csv" % v)
        p.write_text("region,id,amount\n" + "".join("%s,%d,%d\n" % ("r%d" % (i % 5), i, i + (1 if bump and i % bump == 0 else 0))
                                                  for i in range(1, n + 1)))
        files.append(p)
    for name, dist in (("ck_dist", ["--distributed"]), ("ck_plain", [])):
        ccli("dataset", "create", name, "--key", "region,id", "--columns", "region text, id bigint, amount int", *dist)
        for f in files:
            ccli("load", name, f)
    cols = "region, id, amount, _dp_hash"
    assert _content(cq, "ck_dist", cols) == _content(cq, "ck_plain", cols)
    assert "distributed by region" in ccli("dataset", "show", "ck_dist").output
    assert cq("SELECT column_to_column_name(logicalrelid, partkey) FROM pg_dist_partition "
              "WHERE logicalrelid = 'ck_dist'::regclass") == [("region",)]
