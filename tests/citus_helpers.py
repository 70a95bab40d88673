"""A Citus cluster on this machine for the tests and benchmarks/citus.py: a coordinator and two
workers on loopback ports, each a PostgreSQL cluster of its own (run as an unprivileged user when we
are root, like deltapipe's own local server) with shared_preload_libraries = 'citus'.

The three data directories live under /var/tmp (keyed by the tree's path) and are kept between
sessions: a session that finds them only starts them (stopped again at its end if it started them).
Each user of the cluster gets a database of its own on all three nodes, with the workers added to
it (Citus keeps its node list per database), so that tests and benchmarks do not see each other's
tables.

``citus_available()`` says whether the citus extension is installed for the server's major (its
citus.so in `pg_config --pkglibdir` and the extension's control file): tests skip without it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import psycopg

from deltapipe.server import DB_USER, _as_user, _free_port, _run_user, pg_bindir

ROOT = Path(__file__).resolve().parents[1]
_TAG = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
BASE = Path(os.environ.get("DELTAPIPE_CITUS_DIR", "/var/tmp/deltapipe-citus-%d-%s" % (os.getuid(), _TAG)))
NODES = ("coord", "w1", "w2")

CONF = """
# --- written by tests/citus_helpers.py ---
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
shared_preload_libraries = 'citus'
shared_buffers = '256MB'
work_mem = '64MB'
maintenance_work_mem = '256MB'
max_wal_size = '4GB'
synchronous_commit = off
fsync = off
full_page_writes = off
max_connections = 200
max_prepared_transactions = 200
log_min_messages = warning
citus.shard_count = 8
citus.log_remote_commands = off
"""


def _pkglibdir() -> Path:
    try:
        out = subprocess.run([str(pg_bindir() / "pg_config"), "--pkglibdir"], text=True, capture_output=True)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    except OSError:
        pass
    return pg_bindir().parent / "lib"


def citus_available() -> tuple[bool, str]:
    """(True, '') when the citus extension is installed for this PostgreSQL, else (False, why)."""
    try:
        lib = _pkglibdir()
    except Exception as e:  # no PostgreSQL at all
        return False, "PostgreSQL not found: %s" % e
    if not (lib / "citus.so").exists():
        return False, "the citus extension is not installed (no citus.so in %s; build Citus 12.1 from source)" % lib
    share = subprocess.run([str(pg_bindir() / "pg_config"), "--sharedir"], text=True, capture_output=True).stdout.strip()
    if share and not (Path(share) / "extension" / "citus.control").exists():
        return False, "the citus extension is not installed (no citus.control in %s/extension)" % share
    return True, ""


def _pg_ctl(data: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = _as_user([str(pg_bindir() / "pg_ctl"), "-D", str(data), *args], _run_user())
    return subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


class CitusCluster:
    """Coordinator + 2 workers under BASE; ``start()`` returns the ports (coordinator first)."""

    def __init__(self, base: Path = BASE):
        self.base = base
        self.started_here = False
        self.ports: list[int] = []

    def _dir(self, node: str) -> Path:
        return self.base / node

    def _running(self, node: str) -> bool:
        d = self._dir(node)
        return (d / "PG_VERSION").exists() and _pg_ctl(d, "status").returncode == 0

    def _port_of(self, node: str) -> int | None:
        f = self._dir(node) / "postgresql.conf"
        if not f.exists():
            return None
        port = None
        for line in f.read_text().splitlines():
            if line.startswith("port = "):
                port = int(line.split("=")[1])
        return port

    def start(self) -> list[int]:
        user = _run_user()
        self.base.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(self.base, user)
        os.chmod(self.base, 0o755)
        ports = []
        for i, node in enumerate(NODES):
            d = self._dir(node)
            if self._running(node):
                ports.append(self._port_of(node))
                continue
            if not (d / "PG_VERSION").exists():
                if d.exists():
                    shutil.rmtree(d)
                d.mkdir(parents=True)
                if user:
                    shutil.chown(d, user)
                os.chmod(d, 0o700)
                r = subprocess.run(_as_user([str(pg_bindir() / "initdb"), "-D", str(d), "-U", DB_USER, "--auth=trust",
                                             "-E", "UTF8", "--locale=C", "--no-sync"], user),
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                if r.returncode != 0:
                    raise RuntimeError("initdb of %s failed: %s" % (d, r.stdout[-500:]))
            preferred = self._port_of(node) if self._port_of(node) and self._port_of(node) != 5432 else \
                40000 + int(_TAG, 16) % 10000 + 10 * i
            port = _free_port(preferred)
            conf = d / "postgresql.conf"
            text = conf.read_text().split("# --- written by tests/citus_helpers.py ---")[0]
            conf.write_text(text + CONF.format(port=port))
            if user:
                shutil.chown(conf, user)
            r = _pg_ctl(d, "start", "-w", "-t", "60", "-l", str(d / "server.log"))
            if r.returncode != 0:
                raise RuntimeError("the Citus node %s did not start: %s (see %s)" % (node, r.stdout.strip()[-300:],
                                                                                   d / "server.log"))
            self.started_here = True
            ports.append(port)
        self.ports = ports
        return ports

    def stop(self) -> None:
        for node in reversed(NODES):
            if self._running(node):
                _pg_ctl(self._dir(node), "stop", "-m", "fast", "-w")

    def dsn(self, dbname: str, node: int = 0) -> str:
        return "postgresql://%s@127.0.0.1:%d/%s" % (DB_USER, self.ports[node], dbname)

    def create_database(self, dbname: str) -> str:
        """A database of that name on all three nodes with citus, the workers added; returns the coordinator's DSN."""
        for i in range(len(NODES)):
            with psycopg.connect(self.dsn("postgres", i), autocommit=True) as c:
                c.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % dbname)
                c.execute("CREATE DATABASE %s" % dbname)
            with psycopg.connect(self.dsn(dbname, i), autocommit=True) as c:
                c.execute("SET client_min_messages = warning")
                c.execute("CREATE EXTENSION citus")
        with psycopg.connect(self.dsn(dbname), autocommit=True) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (self.ports[0],))
            for p in self.ports[1:]:
                c.execute("SELECT citus_add_node('127.0.0.1', %s)", (p,))
        return self.dsn(dbname)

    def drop_database(self, dbname: str) -> None:
        for i in range(len(NODES)):
            try:
                with psycopg.connect(self.dsn("postgres", i), autocommit=True) as c:
                    c.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % dbname)
            except psycopg.Error:
                pass
