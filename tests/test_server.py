"""`deltapipe server` runs a real local cluster; `pip install` of the wheel works outside the tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from deltapipe.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def scratch():
    d = Path("/var/tmp") / ("dp-test-%s" % uuid.uuid4().hex[:8])
    d.mkdir(mode=0o755)
    yield d
    for pg in (d / "pg", d / "closed" / "pg"):
        if pg.exists():
            CliRunner().invoke(main, ["server", "stop", "--data-dir", str(pg)])
            real = os.path.realpath(pg)
            if real != str(pg):
                shutil.rmtree(Path(real).parent, ignore_errors=True)
    shutil.rmtree(d, ignore_errors=True)


def test_server_start_status_stop(scratch):
    pg = str(scratch / "pg")
    r = CliRunner().invoke(main, ["server", "start", "--data-dir", pg])
    assert r.exit_code == 0, r.output
    dsn = r.output.strip()
    assert dsn.startswith("postgresql://")
    with psycopg.connect(dsn) as c:
        assert c.execute("select current_database()").fetchone()[0] == "deltapipe"
    r = CliRunner().invoke(main, ["server", "status", "--data-dir", pg])
    assert r.exit_code == 0 and "running" in r.output and dsn in r.output
    # a second start is a no-op that prints the same DSN
    assert CliRunner().invoke(main, ["server", "start", "--data-dir", pg]).output.strip() == dsn
    r = CliRunner().invoke(main, ["server", "stop", "--data-dir", pg])
    assert r.exit_code == 0 and "stopped" in r.output
    r = CliRunner().invoke(main, ["server", "status", "--data-dir", pg])
    assert r.exit_code == 3 and "stopped" in r.output


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs another OS user for PostgreSQL")
def test_as_root_a_closed_directory_is_relocated(scratch):
    closed = scratch / "closed"
    closed.mkdir(mode=0o700)  # the postgres user cannot enter it (like /root)
    pg = closed / "pg"
    r = CliRunner().invoke(main, ["server", "start", "--data-dir", str(pg)])
    assert r.exit_code == 0, r.output
    assert pg.is_symlink() and os.path.realpath(pg).startswith("/var/tmp/")
    with psycopg.connect(r.output.strip()) as c:
        assert c.execute("select current_user").fetchone()[0] == "postgres"


def test_wheel_ships_sql_and_migrations(dsn, tmp_path):
    """pip install of the built wheel, then `deltapipe init` from outside the source tree."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True)
    wheel = next(dist.glob("deltapipe-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    assert (target / "deltapipe" / "sql" / "manifest.txt").exists()
    assert (target / "deltapipe" / "migrations" / "env.py").exists()
    env = dict(os.environ, PYTHONPATH=str(target))
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP SCHEMA deltapipe CASCADE")
    out = subprocess.run([sys.executable, "-c", "import deltapipe.resources as r; print(r.sql_dir())"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().startswith(str(target))
    r = subprocess.run([sys.executable, "-m", "deltapipe", "init", "--dsn", dsn], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "routines applied" in r.stdout


def test_servers_in_sibling_directories_keep_their_ports_apart(tmp_path):
    """Each data directory has its own state file (the default one, pg, keeps deltapipe-server.json)."""
    from deltapipe.server import LocalServer
    a, b = LocalServer.at(tmp_path / "pg"), LocalServer.at(tmp_path / "stock")
    assert a.state_path == tmp_path / "deltapipe-server.json"
    assert b.state_path.parent == tmp_path and a.state_path != b.state_path
    b.state_path.write_text('{"port": 5999}')
    assert a.port is None and b.port == 5999
