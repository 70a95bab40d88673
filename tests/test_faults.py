"""Crash safety with real processes, no mocks: the controller killed with SIGKILL in the
middle of COPY and of CALL deltapipe.load, its backend terminated, PostgreSQL stopped
with `pg_ctl -m immediate` during a load. Afterwards every target is exactly in its
before- or after-state (checksum and content), no staging is left once the next load
ran, the killed run is marked failed, and the next load succeeds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from deltapipe.install import install
from deltapipe.server import LocalServer
from fault_helpers import (leftovers, pipeline_state, spawn_load, spawn_run, state, stuck, wait_deltapipe_gone,
                           wait_gone, wait_phase, wait_run_phase, write_pipeline, write_pipeline_data, write_version)

ROWS = 30_000


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    out = {}
    for v in (0, 1, 2):
        p = d / ("v%d.csv" % v)
        out[v] = (p, write_version(p, v, ROWS))
    return out


def setup_dataset(dsn: str, files, name: str = "big") -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT deltapipe.create_dataset(%s, ARRAY['id'], 'id bigint, name text, n int, pad text')", (name,))
    p = spawn_load(dsn, name, files[0][0])
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err


def next_load_ok(conn, dsn, files, version, killed_run):
    """The next load succeeds, marks the killed run failed, leaves no staging; the target is the file."""
    p = spawn_load(dsn, "big", files[version][0])
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    r = json.loads(out.strip().splitlines()[-1])
    assert r["status"] == "done" and r["rows_in"] == r["inserted"] + r["updated"] + r["unchanged"] + r["rejected"] \
        + r["duplicates"]
    assert state(conn, "big") == files[version][1]
    assert leftovers(conn) == (0, 0)
    if killed_run is not None:
        st, err = conn.execute("SELECT status, error FROM deltapipe.run WHERE id = %s", (killed_run,)).fetchone()
        assert st == "failed" and err, (st, err)
        assert conn.execute("SELECT status FROM deltapipe.node_run WHERE run_id = %s", (killed_run,)).fetchone()[0] \
            == "failed"
    assert conn.execute("SELECT count(*) FROM deltapipe.run WHERE status = 'running'").fetchone()[0] == 0


@pytest.mark.parametrize("phase", ["copy", "call"])
def test_sigkill_controller(conn, dsn, files, phase):
    setup_dataset(dsn, files)
    before = state(conn, "big")
    assert before == files[0][1]
    p = spawn_load(dsn, "big", files[1][0])
    pid = wait_phase(conn, p, phase)
    assert pid is not None, "the load ended before reaching %s: %s" % (phase, p.communicate())
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    killed_run = conn.execute("SELECT max(id) FROM deltapipe.run").fetchone()[0]
    # the orphaned backend finishes what it was doing, then finds its client gone and rolls back
    wait_gone(conn, pid)
    assert state(conn, "big") == before
    assert conn.execute("SELECT status FROM deltapipe.run WHERE id = %s", (killed_run,)).fetchone()[0] == "running"
    next_load_ok(conn, dsn, files, 1, killed_run)


@pytest.mark.parametrize("phase", ["copy", "call"])
def test_terminate_backend_mid_load(conn, dsn, files, phase):
    """pg_terminate_backend of the loader's backend: the load is retried (or fails with one
    line); the target is in its before- or after-state, never a mix."""
    setup_dataset(dsn, files)
    before = state(conn, "big")
    p = spawn_load(dsn, "big", files[1][0])
    pid = wait_phase(conn, p, phase)
    assert pid is not None
    assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    out, err = p.communicate(timeout=120)
    after = state(conn, "big")
    assert "Traceback" not in err
    if p.returncode == 0:  # retried: the after-state, and the retry is recorded
        assert after == files[1][1]
        r = json.loads(out.strip().splitlines()[-1])
        assert r["phases"]["retries"] >= 1 and r["phases"]["retry_errors"]
        assert conn.execute("SELECT status FROM deltapipe.run WHERE id = %s", (r["run_id"],)).fetchone()[0] == "done"
    else:
        assert err.strip().splitlines()[-1].startswith("error: ")
        assert after == before
    assert leftovers(conn) == (0, 0)
    next_load_ok(conn, dsn, files, 2, None)


@pytest.fixture
def own_server():
    """A separate cluster of this test only: stopping it does not disturb the shared test server."""
    base = Path("/var/tmp/dp-faults-%s" % uuid.uuid4().hex[:10])
    base.mkdir(mode=0o755)
    srv = LocalServer.at(base / "pg")
    try:
        dsn = srv.start()
        install(dsn)
        yield srv, dsn
    finally:
        srv._pg_ctl("stop", "-m", "immediate", "-w")
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("phase", ["copy", "call"])
def test_immediate_postgres_shutdown_mid_load(own_server, files, phase):
    srv, dsn = own_server
    setup_dataset(dsn, files)
    with psycopg.connect(dsn, autocommit=True) as c:
        before = state(c, "big")
        assert before == files[0][1]
        p = spawn_load(dsn, "big", files[1][0])
        pid = wait_phase(c, p, phase)
        assert pid is not None
    r = srv._pg_ctl("stop", "-m", "immediate", "-w")
    assert r.returncode == 0, r.stdout
    dsn = srv.start()  # crash recovery (the port may change)
    out, err = p.communicate(timeout=120)  # the controller retries or gives up
    assert "Traceback" not in err
    if p.returncode != 0:
        assert err.strip().splitlines()[-1].startswith("error: ")
    with psycopg.connect(dsn, autocommit=True) as c:
        now = state(c, "big")
        assert now in (before, files[1][1])
        if p.returncode == 0:
            assert now == files[1][1]
        run = c.execute("SELECT max(id) FROM deltapipe.run").fetchone()[0]
        p = spawn_load(dsn, "big", files[2][0])
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert state(c, "big") == files[2][1]
        assert leftovers(c) == (0, 0)
        assert c.execute("SELECT status FROM deltapipe.run WHERE id = %s", (run,)).fetchone()[0] in ("done", "failed")
        assert c.execute("SELECT count(*) FROM deltapipe.run WHERE status = 'running'").fetchone()[0] == 0


# ------------------------------------------------------------------ pipeline runs
# `python -m deltapipe run DIR --workers 2` of a scaffolded pipeline with bigger data (2
# sources, 4 models). The after-state of every model and source comes from a clean run in a
# reference database; the before-state from the run of version 0 in the test database.
CUSTOMERS, ORDERS = 3000, 40_000


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    """(pipeline dir, {table: hash} after a clean run of version 1)."""
    from conftest import _dsn
    root = write_pipeline(tmp_path_factory.mktemp("pipe") / "fp", "fp")
    ref_db = "dpref_%d" % os.getpid()
    with psycopg.connect(_dsn("postgres"), autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % ref_db)
        c.execute("CREATE DATABASE %s" % ref_db)
    try:
        install(_dsn(ref_db))
        write_pipeline_data(root, 1, CUSTOMERS, ORDERS)
        p = spawn_run(_dsn(ref_db), root, "--workers", "2")
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        with psycopg.connect(_dsn(ref_db), autocommit=True) as c:
            after = pipeline_state(c, root, PIPE_SOURCES)
    finally:
        with psycopg.connect(_dsn("postgres"), autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % ref_db)
    return root, after


PIPE_SOURCES = ["fp_customers", "fp_orders"]


def start_pipeline(conn, dsn, root):
    """Version 0 run to completion: returns its state (the before-state of the next run)."""
    write_pipeline_data(root, 0, CUSTOMERS, ORDERS)
    p = spawn_run(dsn, root, "--workers", "2")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    before = pipeline_state(conn, root, PIPE_SOURCES)
    write_pipeline_data(root, 1, CUSTOMERS, ORDERS)
    return before


def each_before_or_after(now, before, after):
    for t in now:
        assert now[t] in (before[t], after[t]), "%s is in neither its before- nor its after-state" % t


@pytest.mark.parametrize("phase", ["load", "model"])
def test_sigkill_controller_mid_run_then_resume(conn, dsn, pipe, phase):
    """SIGKILL of `deltapipe run --workers 2` while a source is COPYed or a model refreshed:
    every model and source is in its before- or after-state, the run is detected dead,
    `deltapipe run --resume RUN` finishes that run and lands the after-state exactly."""
    root, after = pipe
    before = start_pipeline(conn, dsn, root)
    assert before != after
    p = spawn_run(dsn, root, "--workers", "2")
    pid = wait_run_phase(conn, p, phase)
    assert pid is not None, "the run ended before reaching %s: %s" % (phase, p.communicate())
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    wait_deltapipe_gone(conn)
    run_id = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
    each_before_or_after(pipeline_state(conn, root, PIPE_SOURCES), before, after)
    q = spawn_run(dsn, root, "--workers", "2", "--resume", str(run_id))
    out, err = q.communicate(timeout=120)
    assert q.returncode == 0, err
    assert pipeline_state(conn, root, PIPE_SOURCES) == after
    assert conn.execute("SELECT status FROM deltapipe.run WHERE id = %s", (run_id,)).fetchone()[0] == "done"
    assert stuck(conn) == (0, 0)


def test_terminate_worker_backend_mid_refresh(conn, dsn, pipe):
    """pg_terminate_backend of a worker's backend in the middle of a model refresh: the run
    retries the node (or fails with one line) and exits; every table is in its before- or
    after-state; a re-run lands the after-state with nothing left 'running'."""
    root, after = pipe
    before = start_pipeline(conn, dsn, root)
    p = spawn_run(dsn, root, "--workers", "2")
    pid = wait_run_phase(conn, p, "model")
    assert pid is not None
    assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        wait_deltapipe_gone(conn)
        raise AssertionError("`deltapipe run --workers 2` hangs after a worker's backend was terminated")
    assert "Traceback" not in err
    assert p.returncode == 0 or err.strip().splitlines()[-1].startswith("error: ")
    wait_deltapipe_gone(conn)
    each_before_or_after(pipeline_state(conn, root, PIPE_SOURCES), before, after)
    q = spawn_run(dsn, root, "--workers", "2")
    out, err = q.communicate(timeout=120)
    assert q.returncode == 0, err
    assert pipeline_state(conn, root, PIPE_SOURCES) == after
    assert stuck(conn) == (0, 0)


def test_incremental_join_aggregate_group_change(cli, conn, tmp_path):
    """Found while building the run faults: `deltapipe new`, 200 customers / 2000 orders,
    run; move one customer to another country (0.5% change: incremental), run again."""
    root = tmp_path / "shop"
    assert cli("new", root).exit_code == 0
    cust = ["id,name,country"] + ["%d,c%d,%s" % (i, i, "UK" if i % 2 else "US") for i in range(1, 201)]
    (root / "data" / "customers.csv").write_text("\n".join(cust) + "\n")
    (root / "data" / "orders.csv").write_text("id,customer_id,amount,day\n" + "".join(
        "%d,%d,%d.00,2024-05-%02d\n" % (i, i % 200 + 1, i % 50, i % 28 + 1) for i in range(1, 2001)))
    assert cli("run", root).exit_code == 0
    cust[1] = "1,c1,FI"
    (root / "data" / "customers.csv").write_text("\n".join(cust) + "\n")
    r = cli("run", root)
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT country FROM customer_totals WHERE customer_id = 1").fetchone()[0] == "FI"
