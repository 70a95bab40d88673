"""Helpers for fault injection (tests/test_faults.py and benchmarks/faults.py): data
files with a known content, exact checks of a target table against them, a controller
in a real subprocess, and waiting for its backend to reach a phase of the load."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

PAD = "p" * 90
HEADER = "id,name,n,pad\n"


def rows_of(version: int, rows: int) -> dict[int, tuple[str, int]]:
    """The content of version ``version`` of a file: {id: (name, n)}. Each version
    changes about a third of the rows, deletes some and adds new ones."""
    out = {}
    for i in range(1, rows + 1):
        if version > 0 and i % 17 == version % 17:
            continue  # deleted in this version
        name = "r%d_v%d" % (i, version) if i % 3 == version % 3 else "r%d" % i
        out[i] = (name, i % 1000)
    for j in range(version * 1000):  # new keys
        out[rows + j + 1] = ("new%d" % j, j)
    return out


def write_version(path: Path, version: int, rows: int) -> str:
    """Write the file, return the content hash its loaded table must have."""
    content = rows_of(version, rows)
    with open(path, "w") as f:
        f.write(HEADER)
        for k, (name, n) in content.items():
            f.write("%d,%s,%d,%s\n" % (k, name, n, PAD))
    return content_hash(content)


def content_hash(content: dict[int, tuple[str, int]]) -> str:
    h = hashlib.md5()
    for k in sorted(content):
        name, n = content[k]
        h.update(("%d,%s,%d\n" % (k, name, n)).encode())
    return h.hexdigest()


def table_hash(conn: psycopg.Connection, table: str) -> str | None:
    """md5 of the table's rows in key order, in the same shape as content_hash; None if no table."""
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return None
    h = hashlib.md5()
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT id || ',' || name || ',' || n || E'\\n' FROM {} ORDER BY id").format(
            sql.Identifier(table)))
        for (line,) in cur:
            h.update(line.encode())
    return h.hexdigest()


def checksum_ok(conn: psycopg.Connection, dataset: str) -> bool:
    """The dataset's recorded checksum and row count equal sum(_dp_hash) and count(*) of its table."""
    schema, table, csum, rows = conn.execute(
        "SELECT target_schema, target_table, checksum, row_count FROM deltapipe.dataset WHERE name = %s",
        (dataset,)).fetchone()
    if conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, table)).fetchone()[0] is None:
        return rows == 0
    got = conn.execute(sql.SQL("SELECT coalesce(sum(_dp_hash::numeric), 0), count(*) FROM {}.{}").format(
        sql.Identifier(schema), sql.Identifier(table))).fetchone()
    return got[0] == csum and got[1] == rows


def state(conn: psycopg.Connection, dataset: str) -> str | None:
    """Content hash of a dataset's table after checking its checksum; raises if the checksum is off."""
    assert checksum_ok(conn, dataset), "checksum of %s does not match its table" % dataset
    table = conn.execute("SELECT target_table FROM deltapipe.dataset WHERE name = %s", (dataset,)).fetchone()[0]
    return table_hash(conn, table)


def leftovers(conn: psycopg.Connection) -> tuple[int, int]:
    """(tables in schema deltapipe_stage, rows in deltapipe.staging)."""
    return (conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'deltapipe_stage'").fetchone()[0],
            conn.execute("SELECT count(*) FROM deltapipe.staging").fetchone()[0])


def spawn_load(dsn: str, dataset: str, path: Path, *args: str) -> subprocess.Popen:
    """`python -m deltapipe load DATASET FILE --force --json` as a real process."""
    env = dict(os.environ, DELTAPIPE_DSN=dsn)
    return subprocess.Popen([sys.executable, "-m", "deltapipe", "load", dataset, str(path), "--force", "--json", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def spawn(dsn: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, DELTAPIPE_DSN=dsn)
    return subprocess.Popen([sys.executable, "-m", "deltapipe", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


PHASES = {"copy": "COPY %", "call": "CALL deltapipe.load%", "run": "%deltapipe.%"}


def wait_phase(conn: psycopg.Connection, proc: subprocess.Popen, phase: str, timeout: float = 30.0,
               dbname: str | None = None) -> int | None:
    """Poll pg_stat_activity until a deltapipe backend of this database is active in ``phase``
    (copy: COPY, call: CALL deltapipe.load); return its pid, or None when the process ended first."""
    dbname = dbname or conn.info.dbname
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'deltapipe' "
                           "AND state = 'active' AND query LIKE %s AND pid <> pg_backend_pid() LIMIT 1",
                           (dbname, PHASES[phase])).fetchone()
        if row:
            return row[0]
        if proc.poll() is not None:
            return None
        time.sleep(0.005)
    raise AssertionError("no backend reached phase %s within %ss" % (phase, timeout))


def wait_gone(conn: psycopg.Connection, pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        if time.monotonic() > deadline:
            raise AssertionError("backend %s still there after %ss" % (pid, timeout))
        time.sleep(0.02)


def one_line(stderr: str) -> str:
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]
