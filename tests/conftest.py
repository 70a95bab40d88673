"""Tests run against a real PostgreSQL: a cluster started once per session by
deltapipe's own server code (as an unprivileged user when we are root), and a
fresh database per test cloned by pytest-postgresql from a template that has
deltapipe installed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from pytest_postgresql import factories

from deltapipe.install import install
from deltapipe.server import DB_USER, LocalServer

ROOT = Path(__file__).resolve().parents[1]
_tag = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
TEST_SERVER = LocalServer.at(os.environ.get("DELTAPIPE_TEST_DATA_DIR",
                                            "/var/tmp/deltapipe-test-%d-%s/pg" % (os.getuid(), _tag)))
_WAS_RUNNING = TEST_SERVER.is_running()  # another pytest session may share the server
TEST_SERVER.start()
PORT = TEST_SERVER.port
DBNAME = "dptest_%d" % os.getpid()  # template and test databases of this session only


def _dsn(dbname: str) -> str:
    return "postgresql://%s@127.0.0.1:%d/%s" % (DB_USER, PORT, dbname)


# tests of single SQL routines (test_csv_split.py) use their own rolled-back transaction
os.environ.setdefault("DELTAPIPE_TEST_DSN", _dsn("postgres"))


def load_deltapipe(host, port, user, dbname, password=None, **_):
    install(_dsn(dbname))


postgresql_noproc = factories.postgresql_noproc(host="127.0.0.1", port=PORT, user=DB_USER, dbname=DBNAME,
                                                load=[load_deltapipe])
postgresql = factories.postgresql("postgresql_noproc")


def pytest_sessionfinish(session, exitstatus):
    if not _WAS_RUNNING and not os.environ.get("DELTAPIPE_TEST_KEEP_SERVER"):
        TEST_SERVER.stop()


@pytest.fixture
def dsn(postgresql) -> str:
    """DSN of a fresh database with deltapipe installed."""
    return _dsn(postgresql.info.dbname)


@pytest.fixture
def conn(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c


@pytest.fixture
def cli(dsn):
    """Invoke the CLI against the test database: cli('load', 'ds', path)."""
    from deltapipe.cli import main
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(main, [str(a) for a in args], env={"DELTAPIPE_DSN": dsn}, input=input,
                             catch_exceptions=False)
    return run


@pytest.fixture
def write(tmp_path):
    """write('name.csv', text) -> Path"""
    def w(name: str, text: str | bytes) -> Path:
        p = tmp_path / name
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text)
        return p
    return w
