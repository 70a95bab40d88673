from test_incremental import change, mismatches, node_strategies, setup
from test_rollback_models import KEYED


def test_scratch(cli, conn, tmp_path):
    orders = [("insert", i, "c%d" % (i % 4), i, "2024-01-01") for i in range(1, 16)]
    customers = [("insert", "c%d" % k, "r%d" % (k % 2)) for k in range(4)]
    d = setup(tmp_path, cli, orders, customers, KEYED)
    print(conn.execute("SELECT * FROM by_region ORDER BY 1").fetchall())
    change(cli, d, orders=[("update", 1, "c0", 0, "2024-01-02")], customers=[("upsert", "c3", "r0")])
    print(node_strategies(conn))
    print(conn.execute("SELECT * FROM by_region ORDER BY 1").fetchall())
    assert mismatches(conn) == []
    run = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline' AND status <> 'rolled_back'").fetchone()[0]
    r = cli("rollback", str(run), "--cascade")
    print(r.output)
    print(conn.execute("SELECT * FROM by_region ORDER BY 1").fetchall())
    assert mismatches(conn) == []
    for step in range(3):
        change(cli, d, orders=[("update", 5 + step, "c3", 9, "2024-01-03")])
        print(step, node_strategies(conn))
        print(conn.execute("SELECT * FROM by_region ORDER BY 1").fetchall())
        assert mismatches(conn) == [], step
