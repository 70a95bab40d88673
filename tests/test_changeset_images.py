"""Rows a refresh records in its model's change log (deltapipe_log, typed columns): read back through
deltapipe.changes(pipeline, model, run) they are the very values of the rows, and a downstream model
that coalesces several runs of an upstream (logged by a full refresh and by an incremental one)
nets them by value. Real PostgreSQL; sources loaded by deltapipe."""

from __future__ import annotations

from pipeline_helpers import make_pipeline
from test_incremental import csv, mismatches, node_strategies

SOURCES = ('[[sources]]\ndataset = "things"\nfile = "data/things.csv"\nkey = "id"\nmode = "changes"\n'
           'op_column = "op"\ncolumns = "id bigint, amt numeric(12,4), name text, day date, flag boolean, '
           'ratio double precision, small smallint"\n')
MODELS = {
    "km": "-- key: id\nSELECT id, amt, name, day, flag, ratio, small, amt * 3 AS tri FROM things",
    "agg": ("SELECT name, day, count(*) AS n, sum(amt) AS s, avg(amt) AS a, max(ratio) AS top\n"
            "FROM things GROUP BY name, day"),
    "down": "-- key: id\nSELECT id, name, tri FROM km WHERE tri > 0",
}
HEADER = "op,id,amt,name,day,flag,ratio,small"
FIRST = [("insert", 1, "1.5000", "a", "2024-01-31", "true", "0.1", 1),
         ("insert", 2, None, '"say ""hi"", ok"', "2024-02-29", "false", "1e-300", -32768),
         ("insert", 3, "-0.0001", "é ü 中", None, None, "123456.789", None),
         ("insert", 4, "99999999.9999", None, "1999-12-31", "true", None, 7),
         ("insert", 5, "2", "b", "2024-01-31", "false", "-2.5", 2)]


def _write(d, rows):
    (d / "data/things.csv").write_text(csv(rows, HEADER))


def test_images_read_back_as_the_rows_they_were(cli, conn, tmp_path):
    d = make_pipeline(tmp_path / "p", MODELS, sources=SOURCES, data={"data/things.csv": csv(FIRST, HEADER)})
    assert cli("run", d, "--no-timeline").exit_code == 0
    old_km = {r[0]: r for r in conn.execute("SELECT id, amt, name, day, flag, ratio, small, tri FROM km").fetchall()}
    old_agg = set(conn.execute("SELECT name, day, n, s, a, top FROM agg").fetchall())
    _write(d, [("update", 1, "-7.2500", "a", "2024-01-31", "false", "0.30000000000000004", 3),
               ("update", 2, "3", '"say ""hi"", ok"', "2024-02-29", None, "1e-300", -32768),
               ("delete", 3, None, None, None, None, None, None),
               ("update", 4, "1", None, "1999-12-31", "true", None, 7)])
    r = cli("run", d, "--no-timeline", "--incremental-threshold", "100")
    assert r.exit_code == 0, r.output
    st = node_strategies(conn)
    assert st["km"][1] == "incremental" and st["agg"][1] == "incremental", st
    rid = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
    # keyed: the before-image of every changed key is its old row, value for value
    before = conn.execute(
        "SELECT b.id, b.amt, b.name, b.day, b.flag, b.ratio, b.small, b.tri FROM deltapipe.changes('p', 'km', %s) c, "
        "jsonb_populate_record(NULL::km, c.before) b", (rid,)).fetchall()
    assert sorted(before, key=lambda x: x[0]) == [old_km[i] for i in (1, 2, 3, 4)]
    keys = conn.execute("SELECT (jsonb_populate_record(NULL::km, c.key)).id FROM deltapipe.changes('p', 'km', %s) c "
                        "ORDER BY 1", (rid,)).fetchall()
    assert keys == [(1,), (2,), (3,), (4,)]
    # keyless aggregate: old images in before, new ones in key, equal to the rows of the table
    gone = set(conn.execute(
        "SELECT b.name, b.day, b.n, b.s, b.a, b.top FROM deltapipe.changes('p', 'agg', %s) c, "
        "jsonb_populate_record(NULL::agg, c.before) b WHERE c.op <> 'I'",
        (rid,)).fetchall())
    new = set(conn.execute(
        "SELECT b.name, b.day, b.n, b.s, b.a, b.top FROM deltapipe.changes('p', 'agg', %s) c, "
        "jsonb_populate_record(NULL::agg, c.key) b WHERE c.op <> 'D'",
        (rid,)).fetchall())
    now = set(conn.execute("SELECT name, day, n, s, a, top FROM agg").fetchall())
    assert gone and gone <= old_agg and not (gone & now)
    assert new and new <= now and not (new & old_agg)
    assert old_agg - gone == now - new
    assert mismatches(conn) == []


def test_several_runs_of_an_upstream_coalesce_by_key_value(cli, conn, tmp_path):
    """km changes key 1 in a fallback refresh (images from refresh_model) and again in an incremental
    one; down, refreshed later in another session, reads both runs from km's change log and must take
    key 1's oldest image only once."""
    d = make_pipeline(tmp_path / "p", MODELS, sources=SOURCES, data={"data/things.csv": csv(FIRST, HEADER)})
    assert cli("run", d, "--no-timeline").exit_code == 0
    _write(d, [("update", 1, "5", "a", "2024-01-31", "true", "0.1", 1),
               ("update", 5, "6", "b", "2024-01-31", "false", "-2.5", 2)])
    r = cli("run", d, "--no-timeline", "--select", "km", "--incremental-threshold", "0")
    assert r.exit_code == 0, r.output
    assert node_strategies(conn)["km"][1] != "incremental"
    _write(d, [("update", 1, "8", "a", "2024-01-31", "true", "0.1", 1)])
    r = cli("run", d, "--no-timeline", "--select", "km", "--incremental-threshold", "100")
    assert r.exit_code == 0, r.output
    assert node_strategies(conn)["km"][1] == "incremental"
    r = cli("run", d, "--no-timeline", "--select", "down", "--incremental-threshold", "100")
    assert r.exit_code == 0, r.output
    assert node_strategies(conn)["down"][1] == "incremental"
    for m in ("km", "down"):  # (agg did not run)
        assert conn.execute("SELECT model, side, row FROM deltapipe.verify('p', %s)", (m,)).fetchall() == []
    assert conn.execute("SELECT tri FROM down WHERE id = 1").fetchone()[0] == 24


def test_a_json_column_keeps_its_text_through_an_incremental_refresh(cli, conn, tmp_path):
    """A json value keeps its text (key order, spaces, repeated keys), an array its bounds; their jsonb
    forms do not. A source with such a column has its new rows read from its table, not from the
    load's after-images."""
    sources = ('[[sources]]\ndataset = "docs"\nfile = "data/docs.csv"\nkey = "id"\nmode = "upsert"\n'
               'columns = "id bigint, doc json, n int, arr int[]"\n')
    models = {"kd": "-- key: id\nSELECT id, doc, n + 1 AS m, arr FROM docs"}
    first = 'id,doc,n,arr\n1,"{""b"": 1, ""a"": 2}",1,{1}\n2,"[1, 2]",2,{2}\n'
    d = make_pipeline(tmp_path / "p", models, sources=sources, data={"data/docs.csv": first})
    assert cli("run", d, "--no-timeline").exit_code == 0
    (d / "data/docs.csv").write_text('id,doc,n,arr\n1,"{""z"": 1,  ""a"": 2, ""a"": 3}",5,"[0:1]={7,8}"\n2,"[1, 2]",2,{2}\n')
    r = cli("run", d, "--no-timeline", "--incremental-threshold", "100")
    assert r.exit_code == 0, r.output
    assert node_strategies(conn)["kd"][1] == "incremental"
    assert conn.execute("SELECT doc::text, m, arr::text FROM kd WHERE id = 1").fetchone() == \
        ('{"z": 1,  "a": 2, "a": 3}', 6, "[0:1]={7,8}")
    assert conn.execute("SELECT doc::text FROM docs WHERE id = 1").fetchone()[0] == '{"z": 1,  "a": 2, "a": 3}'
