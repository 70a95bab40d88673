"""The embedded local PostgreSQL cluster: create, start, stop, status.

PostgreSQL refuses to run as root. When deltapipe runs as root it starts the
server as an unprivileged OS user (``postgres`` if it exists, else a system
user ``deltapipe`` it creates), and if that user cannot reach the requested
data directory (e.g. the project lives under /root) the cluster is placed in
/var/tmp and the requested path becomes a symlink to it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deltapipe.errors import DeltapipeError

DEFAULT_DATA_DIR = Path(".deltapipe") / "pg"
STATE_FILE = "deltapipe-server.json"
DB_USER = "postgres"
DB_NAME = "deltapipe"

SERVER_CONF = """
# --- written by deltapipe server ---
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
shared_buffers = '1GB'
work_mem = '64MB'
maintenance_work_mem = '256MB'
max_wal_size = '4GB'
# room for the WAL of a refresh that updates pages first written before a checkpoint
# (full-page images: ~115 MB at 1% of a 1M-row DAG) without the backend writing it out
wal_buffers = '128MB'
# full-page images uncompressed: lz4 cost a MERGE after a checkpoint more CPU than the writes it saved
wal_compression = off
synchronous_commit = off
wal_level = minimal
max_wal_senders = 0
max_connections = 100
log_min_messages = warning
{preload}
"""


def pg_bindir() -> Path:
    """Directory holding initdb/pg_ctl/postgres of the newest installed major."""
    env = os.environ.get("DELTAPIPE_PG_BINDIR")
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("pg_ctl")
    if exe:
        return Path(os.path.realpath(exe)).parent
    raise DeltapipeError("PostgreSQL binaries not found (initdb, pg_ctl)",
                         hint="install postgresql (apt-get install postgresql) or set DELTAPIPE_PG_BINDIR")


def _run_user() -> str | None:
    """OS user to run the server as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "deltapipe"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "deltapipe"],
                   check=True)
    return "deltapipe"


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


def _can_enter(path: Path, user: str | None) -> bool:
    """True when ``user`` can reach ``path``'s parent (we create and chown ``path`` itself)."""
    if user is None:
        return True
    r = subprocess.run(_as_user(["test", "-x", str(path.parent)], user))
    return r.returncode == 0


def _free_port(preferred: int) -> int:
    for port in [preferred, *range(preferred + 1, preferred + 200)]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # like PostgreSQL itself: a port left in TIME_WAIT by our own last server is free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise DeltapipeError("no free TCP port near %d for the local server" % preferred)


@dataclass
class LocalServer:
    data_dir: Path  # the path the user asked for (may be a symlink)

    @classmethod
    def at(cls, data_dir: str | Path | None) -> "LocalServer":
        return cls(Path(os.path.abspath(data_dir or DEFAULT_DATA_DIR)))

    @property
    def real_dir(self) -> Path:
        return Path(os.path.realpath(self.data_dir))

    @property
    def state_path(self) -> Path:
        # next to the data directory: deltapipe-server.json for the default name (pg), else named after the
        # data directory, so that servers in sibling directories do not overwrite each other's port
        name = self.data_dir.name
        return self.data_dir.parent / (STATE_FILE if name == "pg" else "deltapipe-server-%s.json" % name)

    def state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None

    @property
    def port(self) -> int | None:
        st = self.state()
        return st and st.get("port")

    def dsn(self) -> str:
        st = self.state()
        if not st:
            raise DeltapipeError("no local server at %s" % self.data_dir, hint="run `deltapipe server start`")
        return "postgresql://%s@127.0.0.1:%d/%s" % (DB_USER, st["port"], DB_NAME)

    def _pg_ctl(self, *args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
        user = _run_user()
        cmd = _as_user([str(pg_bindir() / "pg_ctl"), "-D", str(self.real_dir), *args], user)
        return subprocess.run(cmd, check=False, text=True,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.STDOUT if capture else None,
                              stdin=subprocess.DEVNULL)

    def is_running(self) -> bool:
        if not (self.real_dir / "PG_VERSION").exists():
            return False
        return self._pg_ctl("status").returncode == 0

    def _create(self) -> None:
        user = _run_user()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        target = self.data_dir
        if not _can_enter(self.data_dir, user):
            # The requested location is closed to the server's OS user: keep the
            # cluster in /var/tmp and make the requested path a symlink to it.
            tag = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
            base = Path("/var/tmp") / ("deltapipe-" + tag)
            base.mkdir(mode=0o755, exist_ok=True)
            target = base / "pg"
            if target.exists():
                shutil.rmtree(target)
            if self.data_dir.is_symlink():
                self.data_dir.unlink()
            self.data_dir.symlink_to(target)
        target.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(target, user)
            os.chmod(target, 0o700)
        init = _as_user([str(pg_bindir() / "initdb"), "-D", str(target), "-U", DB_USER, "--auth=trust",
                         "-E", "UTF8", "--locale=C", "--no-sync"], user)
        r = subprocess.run(init, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise DeltapipeError("initdb failed: %s" % r.stdout.strip().splitlines()[-1:])

    def _configure(self, port: int) -> None:
        conf = self.real_dir / "postgresql.conf"
        text = conf.read_text()
        marker = "# --- written by deltapipe server ---"
        text = text.split(marker)[0]
        preload = ""
        libdir = pg_bindir().parent / "lib"
        if (libdir / "pg_cron.so").exists():
            preload = "shared_preload_libraries = 'pg_cron'\ncron.database_name = '%s'\ncron.use_background_workers = on" % DB_NAME
        text += SERVER_CONF.format(port=port, preload=preload)
        tmp = self.real_dir / "postgresql.conf.tmp"
        tmp.write_text(text)
        user = _run_user()
        if user:
            shutil.chown(tmp, user)
        tmp.replace(conf)

    def start(self) -> str:
        """Create the cluster if needed, start it, and return its DSN."""
        if self.is_running():
            return self.dsn()
        if not (self.real_dir / "PG_VERSION").exists():
            self._create()
        st = self.state() or {}
        preferred = st.get("port") or 20000 + int(hashlib.sha256(str(self.data_dir).encode()).hexdigest(), 16) % 20000
        port = _free_port(preferred)
        self._configure(port)
        log = self.real_dir / "server.log"
        r = self._pg_ctl("start", "-w", "-t", "60", "-l", str(log))
        if r.returncode != 0:
            tail = ""
            try:
                tail = log.read_text().strip().splitlines()[-1]
            except (OSError, IndexError):
                pass
            raise DeltapipeError("the local server did not start: %s" % (tail or r.stdout.strip()),
                                 hint="see %s" % log)
        self.state_path.write_text(json.dumps({"port": port, "data_dir": str(self.data_dir)}))
        self._ensure_database()
        return self.dsn()

    def _ensure_database(self) -> None:
        import psycopg
        with psycopg.connect("postgresql://%s@127.0.0.1:%d/postgres" % (DB_USER, self.port), autocommit=True) as c:
            if not c.execute("select 1 from pg_database where datname = %s", (DB_NAME,)).fetchone():
                c.execute("create database %s" % DB_NAME)

    def stop(self) -> bool:
        if not self.is_running():
            return False
        self._pg_ctl("stop", "-m", "fast", "-w")
        return True

    def status(self) -> dict:
        running = self.is_running()
        return {"data_dir": str(self.data_dir), "real_dir": str(self.real_dir), "running": running,
                "dsn": self.dsn() if running else None}


def find_local_server(start: Path | None = None) -> LocalServer | None:
    """The local server of the project containing ``start`` (cwd by default)."""
    here = Path(os.path.abspath(start or os.getcwd()))
    for d in [here, *here.parents]:
        if (d / ".deltapipe" / STATE_FILE).exists():
            return LocalServer(d / DEFAULT_DATA_DIR)
    return None
