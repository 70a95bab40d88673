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


# ------------------------------------------------------------------ pipeline runs
# A pipeline scaffolded by `deltapipe new` (customers, orders; models customer_totals,
# country_revenue, daily_revenue) with a bigger, versioned data set and one more model
# that is always rebuilt in full (a window function), so a run exercises loads, incremental
# refreshes (join + aggregate, aggregate of a model) and a full rebuild.
COUNTRIES = ("UK", "US", "FI", "DE", "FR", "SE", "NO", "JP", "BR", "IN")
TOP_CUSTOMERS = """-- key: customer_id
-- Rank of each customer by revenue: a window function, rebuilt in full on every change.
SELECT customer_id, name, revenue, rank() OVER (ORDER BY revenue DESC, customer_id) AS rnk
FROM customer_totals
"""


def write_pipeline(root: Path, name: str, extra_models: dict[str, str] | None = None) -> Path:
    """`deltapipe new ROOT` plus the model top_customers (and extra_models: {name: sql})."""
    from deltapipe.pipeline.scaffold import scaffold
    scaffold(root, name)
    for m, text in {"top_customers": TOP_CUSTOMERS, **(extra_models or {})}.items():
        (root / "models" / (m + ".sql")).write_text(text)
    return root


def write_pipeline_data(root: Path, version: int, customers: int, orders: int) -> None:
    """Version ``version`` of data/customers.csv and data/orders.csv (written atomically).
    Each version deletes some customers
    and orders, adds customers, changes 1% of the amounts and adds new orders."""
    lines = ["id,name,country\n"]
    for i in range(1, customers + 1 + version * 20):
        if version > 0 and i % 23 == version % 23:
            continue
        # (a customer keeps name and country: changing them trips an incremental-refresh bug,
        # see test_faults.py::test_incremental_join_aggregate_group_change)
        lines.append("%d,c%d,%s\n" % (i, i, COUNTRIES[(i * 7) % len(COUNTRIES)]))
    _atomic_write(root / "data" / "customers.csv", "".join(lines))
    lines = ["id,customer_id,amount,day\n"]
    for i in range(1, orders + 1 + version * 500):
        if version > 0 and i % 97 == version % 97:
            continue
        cents = (i * 37) % 10000 + (version * 13 if i % 100 == version % 100 else 0)
        lines.append("%d,%d,%d.%02d,2024-%02d-%02d\n" % (i, (i * 13) % customers + 1, cents // 100, cents % 100,
                                                        (i // 28) % 12 + 1, i % 28 + 1))
    _atomic_write(root / "data" / "orders.csv", "".join(lines))


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def model_names(root: Path) -> list[str]:
    return sorted(p.stem.lower() for p in (root / "models").glob("*.sql"))


def model_hash(conn: psycopg.Connection, table: str) -> str | None:
    """md5 of every column of every row (hidden columns too), in text order; None if no table."""
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return None
    return conn.execute(sql.SQL("SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), 'empty') "
                                "FROM {} t").format(sql.Identifier(table))).fetchone()[0]


def model_rows(conn: psycopg.Connection, table: str) -> set[str]:
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return set()
    return {r[0] for r in conn.execute(sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table)))}


def dataset_hash(conn: psycopg.Connection, dataset: str) -> str | None:
    """Content hash of a dataset's user columns after checking its checksum (raises if off)."""
    assert checksum_ok(conn, dataset), "checksum of %s does not match its table" % dataset
    schema, table = conn.execute("SELECT target_schema, target_table FROM deltapipe.dataset WHERE name = %s",
                                 (dataset,)).fetchone()
    if conn.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, table)).fetchone()[0] is None:
        return None
    cols = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = format('%%I.%%I', %s::text, %s::text)::regclass "
        "AND attnum > 0 AND NOT attisdropped AND attname NOT LIKE '\\_dp\\_%%' ORDER BY attnum", (schema, table))]
    row = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(sql.Identifier(c) for c in cols))
    return conn.execute(sql.SQL("SELECT coalesce(md5(string_agg({r}, ',' ORDER BY {r})), 'empty') FROM {s}.{t}").format(
        r=row, s=sql.Identifier(schema), t=sql.Identifier(table))).fetchone()[0]


def pipeline_state(conn: psycopg.Connection, root: Path, datasets: list[str]) -> dict[str, str | None]:
    """{model or dataset: content hash} of a pipeline's tables."""
    out = {m: model_hash(conn, m) for m in model_names(root)}
    out.update({d: dataset_hash(conn, d) for d in datasets})
    return out


def spawn_run(dsn: str, root: Path, *args: str) -> subprocess.Popen:
    """`python -m deltapipe run ROOT ARGS` as a real process (ROOT may be omitted with --resume ...)."""
    return spawn(dsn, "run", str(root), "--no-timeline", *args)


RUN_PHASES = {"load": "COPY %", "model": "%deltapipe.run_node(%"}


def wait_run_phase(conn: psycopg.Connection, proc: subprocess.Popen, phase: str, timeout: float = 60.0,
                   dbname: str | None = None) -> int | None:
    """Poll pg_stat_activity until a backend of a `deltapipe run` process (controller, workers,
    the loads of its sources) is active in ``phase`` (load: COPY of a source, model: run_node);
    return its pid, or None when the process ended first."""
    dbname = dbname or conn.info.dbname
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name LIKE 'deltapipe%%' "
                           "AND state = 'active' AND query LIKE %s AND pid <> pg_backend_pid() LIMIT 1",
                           (dbname, RUN_PHASES[phase])).fetchone()
        if row:
            return row[0]
        if proc.poll() is not None:
            return None
        time.sleep(0.003)
    raise AssertionError("no backend reached run phase %s within %ss" % (phase, timeout))


def wait_deltapipe_gone(conn: psycopg.Connection, timeout: float = 120.0, dbname: str | None = None) -> None:
    """Wait until no deltapipe backend (controller, worker, loader) of this database is left."""
    dbname = dbname or conn.info.dbname
    for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name LIKE "
                               "'deltapipe%%' AND pid <> pg_backend_pid()", (dbname,)).fetchall():
        wait_gone(conn, pid, timeout)


def stuck(conn: psycopg.Connection) -> tuple[int, int]:
    """(runs, node runs) with status 'running'."""
    return (conn.execute("SELECT count(*) FROM deltapipe.run WHERE status = 'running'").fetchone()[0],
            conn.execute("SELECT count(*) FROM deltapipe.node_run WHERE status = 'running'").fetchone()[0])
