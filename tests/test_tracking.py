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


def _tracked_pipeline(cli, conn, tmp_path, models=MODELS, n=200):
    _app(conn, n)
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


def test_a_writer_without_privileges_and_its_own_search_path_is_captured_as_it_wrote(cli, conn, tmp_path):
    # the capture trigger runs as its owner (SECURITY DEFINER) without a SET search_path:
    # a writer with no privilege on deltapipe's catalog is captured, and functions and
    # operators of its own that an unqualified name would find first are not called
    d = _tracked_pipeline(cli, conn, tmp_path)
    conn.execute("DO $$ BEGIN CREATE ROLE dp_track_writer; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    try:
        conn.execute("GRANT USAGE ON SCHEMA app TO dp_track_writer")
        conn.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON app.orders TO dp_track_writer")
        conn.execute("CREATE SCHEMA mine AUTHORIZATION dp_track_writer")
        conn.execute("SET ROLE dp_track_writer")
        conn.execute("""CREATE FUNCTION mine.to_jsonb(bigint[]) RETURNS jsonb LANGUAGE sql
                        AS $$SELECT '["forged"]'::jsonb$$""")
        conn.execute("""CREATE FUNCTION mine.forge(jsonb, jsonb) RETURNS jsonb LANGUAGE sql
                        AS $$SELECT '["forged"]'::jsonb$$""")
        conn.execute("CREATE OPERATOR mine.|| (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = mine.forge)")
        conn.execute("CREATE FUNCTION mine.current_setting(text, boolean) RETURNS text LANGUAGE sql AS $$SELECT 'x'$$")
        conn.execute("CREATE FUNCTION mine.same(text, text) RETURNS boolean LANGUAGE sql AS $$SELECT true$$")
        conn.execute("CREATE OPERATOR mine.= (LEFTARG = text, RIGHTARG = text, FUNCTION = mine.same)")
        conn.execute("SET search_path = mine, pg_catalog, app")
        assert conn.execute("SELECT to_jsonb(ARRAY[1::bigint])").fetchone()[0] == ["forged"]
        conn.execute("UPDATE orders SET amount = amount + 30 WHERE id IN (3, 4)")
        conn.execute("INSERT INTO orders VALUES (1001, 'c1', 44)")
        conn.execute("DELETE FROM orders WHERE id = 5")
    finally:
        conn.execute("RESET ROLE")
        conn.execute("RESET search_path")
    keys = conn.execute("SELECT op, key FROM deltapipe.changeset WHERE node = 'app.orders' ORDER BY seq").fetchall()
    assert keys == [("U", [3, 4, 3, 4]), ("I", [1001]), ("D", [5])], keys
    _run(cli, d)
    st = node_strategies(conn)
    assert all(v[0] == "done" and v[1] == "incremental" for v in st.values()), st
    assert mismatches(conn) == []
    conn.execute("DROP SCHEMA mine CASCADE")
    conn.execute("DROP OWNED BY dp_track_writer")
    conn.execute("DROP ROLE dp_track_writer")


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


def test_concurrent_writers_while_runs_go_on(cli, conn, dsn, tmp_path):
    """Several connections write the tracked tables (single- and multi-row transactions, key updates,
    rollbacks) while runs refresh the models: afterwards every model equals its recompute and every
    refresh after the first build was incremental."""
    d = _tracked_pipeline(cli, conn, tmp_path, n=5000)
    stop = threading.Event()
    errors: list = []

    def writer(seed):
        rnd = random.Random(seed)
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                while not stop.is_set():
                    k = rnd.randint(1, 5000)
                    try:
                        with c.transaction():
                            op = rnd.random()
                            if op < 0.4:
                                c.execute("UPDATE app.orders SET amount = %s WHERE id = %s", (rnd.randint(0, 60), k))
                            elif op < 0.55:
                                c.execute("INSERT INTO app.orders VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING",
                                          (k, "c%d" % rnd.randint(0, 8), rnd.randint(0, 60)))
                            elif op < 0.65:
                                c.execute("DELETE FROM app.orders WHERE id = %s", (k,))
                            elif op < 0.75:  # a key update
                                c.execute("UPDATE app.orders SET id = %s WHERE id = %s AND NOT EXISTS "
                                          "(SELECT 1 FROM app.orders WHERE id = %s)", (k + 1000, k, k + 1000))
                            elif op < 0.85:  # a multi-row transaction
                                c.execute("UPDATE app.orders SET amount = amount + 1 WHERE id BETWEEN %s AND %s",
                                          (k, k + 5))
                                c.execute("DELETE FROM app.orders WHERE id = %s", (k + 7,))
                                c.execute("UPDATE app.customers SET region = %s WHERE name = %s",
                                          ("r%d" % rnd.randint(0, 3), "c%d" % rnd.randint(0, 6)))
                            else:  # rolled back
                                c.execute("UPDATE app.orders SET amount = -1000 WHERE id BETWEEN %s AND %s", (k, k + 20))
                                raise RuntimeError("rollback")
                    except RuntimeError:
                        pass
                    except psycopg.errors.DeadlockDetected:
                        pass
                    time.sleep(rnd.random() * 0.002)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(6):
            _run(cli, d)
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    _run(cli, d)
    assert mismatches(conn) == []
    full = conn.execute("""SELECT n.node, n.full_because FROM deltapipe.node_run n JOIN deltapipe.run r ON r.id = n.run_id
                            WHERE r.kind = 'pipeline' AND n.status = 'done' AND n.full_because IS NOT NULL
                              AND r.id > (SELECT min(id) FROM deltapipe.run WHERE kind = 'pipeline')""").fetchall()
    assert full == []
    assert conn.execute("SELECT count(*) FROM deltapipe.node_run n JOIN deltapipe.run r ON r.id = n.run_id "
                        "WHERE r.kind = 'pipeline' AND n.strategy = 'incremental'").fetchone()[0] > 0
    assert conn.execute("SELECT count(*) FROM deltapipe.changeset WHERE node = 'app.orders'").fetchone()[0] > 100


DS_MODELS = {
    "big_orders": "SELECT id, customer, amount FROM orders WHERE amount > 2",
    "per_customer": "SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer",
}


def test_hand_written_writes_to_a_dataset_reach_its_models(cli, conn, tmp_path):
    (tmp_path / "orders.csv").write_text("id,customer,amount\n" + "".join(
        "%d,c%d,%d\n" % (i, i % 5, i % 7) for i in range(1, 101)))
    assert cli("dataset", "create", "orders", "--key", "id", "--columns",
               "id bigint, customer text, amount numeric").exit_code == 0
    assert cli("load", "orders", tmp_path / "orders.csv").exit_code == 0
    d = make_pipeline(tmp_path / "p", DS_MODELS, sources="")
    _run(cli, d)
    # a second load: its changes are logged once, by the load (not by the triggers)
    (tmp_path / "orders.csv").write_text("id,customer,amount\n" + "".join(
        "%d,c%d,%d\n" % (i, i % 5, (i % 7) + (i == 3)) for i in range(1, 101)))
    assert cli("load", "orders", tmp_path / "orders.csv").exit_code == 0
    assert conn.execute("SELECT count(*) FROM deltapipe.changeset c JOIN deltapipe.run r ON r.id = c.run_id "
                        "WHERE c.node = 'orders' AND r.kind = 'capture'").fetchone()[0] == 0
    _run(cli, d)
    # a DBA's fix, by hand: UPDATE, DELETE, INSERT
    conn.execute("UPDATE orders SET amount = 100 WHERE id <= 10")
    conn.execute("DELETE FROM orders WHERE id = 20")
    conn.execute("INSERT INTO orders (id, customer, amount, _dp_hash) VALUES (500, 'c9', 50, 0)")
    _run(cli, d)
    st = node_strategies(conn)
    assert st["big_orders"][:2] == ("done", "incremental") and st["per_customer"][:2] == ("done", "incremental"), st
    assert mismatches(conn) == []
    assert conn.execute("SELECT total FROM per_customer WHERE customer = 'c9'").fetchone()[0] == 50


def test_a_models_table_refuses_writes_by_hand(cli, conn, tmp_path):
    d = _tracked_pipeline(cli, conn, tmp_path)
    for stmt in ("UPDATE big SET amount = 0", "DELETE FROM per_customer", "INSERT INTO regions VALUES ('x', 1)",
                 "TRUNCATE named"):
        with pytest.raises(psycopg.Error) as e:
            conn.execute(stmt)
        assert e.value.diag.sqlstate == "DP704", stmt
        assert "written by its refresh only" in e.value.diag.message_primary
    conn.execute("UPDATE app.orders SET amount = 45 WHERE id = 1")
    _run(cli, d, "--full-refresh")  # a swap puts the guard on the new table
    with pytest.raises(psycopg.Error) as e:
        conn.execute("UPDATE big SET amount = 0")
    assert e.value.diag.sqlstate == "DP704"
    assert mismatches(conn) == []


def test_run_continuously_catches_up_every_interval(cli, conn, dsn, tmp_path):
    d = _tracked_pipeline(cli, conn, tmp_path)
    runs0 = conn.execute("SELECT count(*) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]

    def later():
        time.sleep(0.8)
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("UPDATE app.orders SET amount = 49 WHERE id = 2")

    t = threading.Thread(target=later)
    t.start()
    r = cli("serve", "p", "--every", "200ms", "--for", "2s")
    t.join()
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT amount FROM big WHERE id = 2").fetchone()[0] == 49
    assert mismatches(conn) == []
    # rounds without a change create no run: the first round, and the one after the write
    runs = conn.execute("SELECT count(*) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0] - runs0
    assert 1 <= runs <= 3, runs
    stats = conn.execute("SELECT models_refreshed, change_rows FROM deltapipe.run_stat "
                         "ORDER BY run_id DESC LIMIT 1").fetchone()
    assert stats[0] >= 1 and stats[1] >= 1, stats
    r = cli("metrics")
    assert "deltapipe_refresh_models_total" in r.output


def test_per_model_cadence(cli, conn, tmp_path):
    d = _tracked_pipeline(cli, conn, tmp_path)
    with open(d / "pipeline.toml", "a") as f:
        f.write('\n[models.per_customer]\nrefresh = "on run"\n[models.named]\nrefresh = "1h"\n')
    assert cli("deploy", d).exit_code == 0
    before = conn.execute("SELECT total FROM per_customer WHERE customer = 'c1'").fetchone()[0]
    conn.execute("UPDATE app.orders SET amount = amount + 40 WHERE id = 1")
    r = cli("serve", "p", "--every", "200ms", "--for", "1s")
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT amount FROM big WHERE id = 1").fetchone()[0] == 41
    # "on run" waits for an explicit run; "1h" ran in the first round (never ran under serve before)
    assert conn.execute("SELECT total FROM per_customer WHERE customer = 'c1'").fetchone()[0] == before
    assert conn.execute("SELECT amount FROM named WHERE id = 1").fetchone()[0] == 41
    _run(cli, d)
    assert mismatches(conn) == []
    (d / "pipeline.toml").write_text((d / "pipeline.toml").read_text().replace('"1h"', '"often"'))
    r = cli("deploy", d)
    assert r.exit_code == 1 and "invalid refresh" in r.output


def test_maintain_prunes_captured_changes_once_read(cli, conn, tmp_path):
    d = _tracked_pipeline(cli, conn, tmp_path)
    conn.execute("UPDATE app.orders SET amount = 33 WHERE id = 1")
    _run(cli, d)
    conn.execute("UPDATE app.orders SET amount = 34 WHERE id = 2")  # not read yet
    r = conn.execute("CALL deltapipe.maintain()").fetchone()[0]
    assert r["captured_changes_pruned"] >= 1
    assert conn.execute("SELECT count(*) FROM deltapipe.changeset WHERE node = 'app.orders'").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM deltapipe.run WHERE kind = 'capture'").fetchone()[0] == 2
    _run(cli, d)
    st = node_strategies(conn)
    assert st["big"][:2] == ("done", "incremental"), st
    assert mismatches(conn) == []


def test_tracked_again_after_untracked_writes(cli, conn, tmp_path):
    d = _tracked_pipeline(cli, conn, tmp_path)
    assert cli("untrack", "app.orders").exit_code == 0
    conn.execute("UPDATE app.orders SET amount = 49 WHERE id <= 5")  # not captured
    assert cli("track", "app.orders").exit_code == 0
    _run(cli, d)
    st = node_strategies(conn)
    assert st["big"][0] == "done" and st["big"][2], st  # refreshed in full: its position was in the old log
    assert mismatches(conn) == []
    conn.execute("UPDATE app.orders SET amount = 48 WHERE id = 6")
    _run(cli, d)
    assert node_strategies(conn)["big"][1] == "incremental"
    assert mismatches(conn) == []


def test_a_key_of_two_columns(cli, conn, tmp_path):
    conn.execute("CREATE SCHEMA app")
    conn.execute("CREATE TABLE app.stock (shop text, sku int, qty int, seen timestamptz)")
    conn.execute("INSERT INTO app.stock SELECT 's' || (i % 3), i, i % 9, '2024-01-01'::timestamptz + i * interval '1 hour' "
                 "FROM generate_series(1, 60) i")
    r = cli("track", "app.stock", "--key", "shop,sku")
    assert r.exit_code == 0, r.output
    d = make_pipeline(tmp_path / "p", {
        "per_shop": "SELECT shop, sum(qty) AS qty, count(*) AS n, max(seen) AS last FROM app.stock GROUP BY shop",
        "low": "SELECT shop, sku, qty FROM app.stock WHERE qty < 3"}, sources="")
    _run(cli, d)
    conn.execute("UPDATE app.stock SET qty = qty + 1, seen = seen + interval '1 day' WHERE sku < 10")
    conn.execute("UPDATE app.stock SET shop = 'moved' WHERE sku = 20")  # a key update
    conn.execute("DELETE FROM app.stock WHERE sku BETWEEN 30 AND 33")
    conn.execute("INSERT INTO app.stock VALUES ('s9', 1, 1, now())")
    _run(cli, d)
    st = node_strategies(conn)
    assert all(v[:2] == ("done", "incremental") for v in st.values()), st
    assert mismatches(conn) == []


def test_serve_stops_cleanly_on_ctrl_c(cli, conn, dsn, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    d = _tracked_pipeline(cli, conn, tmp_path)
    env = dict(os.environ, DELTAPIPE_DSN=dsn, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "deltapipe", "serve", "p", "--every", "200ms"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)
        conn.execute("UPDATE app.orders SET amount = 47 WHERE id = 3")
        deadline = time.time() + 15
        while time.time() < deadline:
            if conn.execute("SELECT amount FROM big WHERE id = 3").fetchone() == (47,):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped after" in err and "Traceback" not in err, err
    assert conn.execute("SELECT amount FROM big WHERE id = 3").fetchone() == (47,)
    assert conn.execute("SELECT count(*) FROM deltapipe.run WHERE status = 'running'").fetchone()[0] == 0
    assert mismatches(conn) == []
