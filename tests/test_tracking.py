"""Change capture: tracked application tables (deltapipe track), out-of-band writes of datasets' tables,
refused writes of models' tables, run_continuously. Real PostgreSQL, several connections."""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest

from pipeline_helpers import make_pipeline
from test_incremental import mismatches, node_strategies

MODELS = {
    "big": "SELECT id, customer, amount FROM app.orders WHERE amount > 20",
    "per_customer": "SELECT customer, count(*) AS n, sum(amount) AS total FROM app.orders GROUP BY customer",
    "named": "SELECT o.id, o.amount, c.region FROM app.orders o JOIN app.customers c ON c.name = o.customer",
    "regions": "SELECT c.region, sum(b.amount) AS total FROM big b JOIN app.customers c ON c.name = b.customer "
               "GROUP BY c.region",
}


def _app(conn, n=200):
    conn.execute("CREATE SCHEMA app")
    conn.execute("CREATE TABLE app.orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric)")
    conn.execute("CREATE TABLE app.customers (name text, region text)")
    conn.execute("INSERT INTO app.orders SELECT i, 'c' || (i %% 7), i %% 50 FROM generate_series(1, %s) i" % n)
    conn.execute("INSERT INTO app.customers SELECT 'c' || i, 'r' || (i % 3) FROM generate_series(0, 6) i")


def _tracked_pipeline(cli, conn, tmp_path, models=MODELS):
    _app(conn)
    r = cli("track", "app.orders")
    assert r.exit_code == 0, r.output
    r = cli("track", "app.customers", "--key", "name")
    assert r.exit_code == 0, r.output
    d = make_pipeline(tmp_path / "p", models, sources="")
    r = cli("run", d, "--no-timeline")
    assert r.exit_code == 0, r.output
    return d


def _run(cli, d, *extra):
    r = cli("run", d, "--no-timeline", "--incremental-threshold", "1", *extra)
    assert r.exit_code == 0, r.output
    return r


def test_track_needs_a_key_and_a_table(cli, conn):
    _app(conn)
    r = cli("track", "app.customers")
    assert r.exit_code == 1
    assert "has no primary key" in r.output and "--key" in r.output
    with pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT deltapipe.track('app.customers')")
    assert e.value.diag.sqlstate == "DP702"
    assert e.value.diag.message_detail and e.value.diag.message_hint
    with pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT deltapipe.track('app.nope')")
    assert e.value.diag.sqlstate == "DP701"
    conn.execute("INSERT INTO app.customers VALUES ('c1', 'dup')")
    with pytest.raises(psycopg.Error) as e:
        conn.execute("SELECT deltapipe.track('app.customers', key => ARRAY['name'])")
    assert e.value.diag.sqlstate == "DP702" and "1 duplicate" in e.value.diag.message_detail


def test_tracked_models_refresh_incrementally(cli, conn, tmp_path):
    d = _tracked_pipeline(cli, conn, tmp_path)
    r = cli("plan", d)
    assert r.exit_code == 0, r.output
    assert "external" not in r.output
    r = cli("tracked")
    assert r.exit_code == 0 and "app.orders" in r.output and "app.customers" in r.output
    conn.execute("UPDATE app.orders SET amount = amount + 30 WHERE id IN (3, 4)")
    conn.execute("DELETE FROM app.orders WHERE id = 5")
    conn.execute("INSERT INTO app.orders VALUES (1001, 'c1', 44), (1002, 'c9', 3)")
    conn.execute("UPDATE app.orders SET id = 2001 WHERE id = 6")  # a key update
    conn.execute("UPDATE app.customers SET region = 'rx' WHERE name = 'c1'")
    _run(cli, d)
    st = node_strategies(conn)
    assert all(v[0] == "done" and v[1] == "incremental" for v in st.values()), st
    assert mismatches(conn) == []
    # nothing changed: every model is skipped
    _run(cli, d)
    assert {v[0] for v in node_strategies(conn).values()} == {"skipped"}


def test_truncate_and_alter_refresh_in_full_once(cli, conn, tmp_path):
    d = _tracked_pipeline(cli, conn, tmp_path)
    conn.execute("TRUNCATE app.orders")
    conn.execute("INSERT INTO app.orders VALUES (1, 'c1', 30), (2, 'c2', 40)")
    _run(cli, d)
    st = node_strategies(conn)
    assert "truncated" in st["big"][2] and "truncated" in st["per_customer"][2], st
    assert mismatches(conn) == []
    conn.execute("UPDATE app.orders SET amount = 50 WHERE id = 1")
    _run(cli, d)
    st = node_strategies(conn)
    assert st["big"][1] == "incremental" and st["per_customer"][1] == "incremental", st
    conn.execute("ALTER TABLE app.orders ADD COLUMN note text")
    conn.execute("UPDATE app.orders SET note = 'x', amount = 60 WHERE id = 2")
    _run(cli, d)
    st = node_strategies(conn)
    assert "columns changed" in st["big"][2], st
    assert mismatches(conn) == []
    conn.execute("UPDATE app.orders SET amount = 61 WHERE id = 2")
    _run(cli, d)
    assert node_strategies(conn)["big"][1] == "incremental"
    assert mismatches(conn) == []


def test_untrack_leaves_nothing_behind(cli, conn, tmp_path):
    _app(conn)
    assert cli("track", "app.orders").exit_code == 0
    conn.execute("UPDATE app.orders SET amount = 1 WHERE id = 1")
    fn = conn.execute("SELECT deltapipe._capture_function('app.orders')").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'app.orders'::regclass").fetchone()[0] == 4
    assert conn.execute("SELECT count(*) FROM deltapipe.changeset WHERE node = 'app.orders'").fetchone()[0] == 1
    r = cli("untrack", "app.orders")
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'app.orders'::regclass").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", (fn,)).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM deltapipe.changeset WHERE node = 'app.orders'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM deltapipe.tracked").fetchone()[0] == 0
    conn.execute("UPDATE app.orders SET amount = 2 WHERE id = 1")  # no trigger left to fail
    r = cli("untrack", "app.orders")
    assert r.exit_code == 1 and "not tracked" in r.output
