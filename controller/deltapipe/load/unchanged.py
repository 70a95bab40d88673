"""Knowing a file is unchanged without reading it.

Every load records the file's SHA-256 (computed while the file streams, or before) and, in the run's
arguments (``file_stat``), the file's size, mtime, ctime, inode and device as they were when it was
read. A later load of a file with exactly that stat, whose recorded SHA-256 is the dataset's last
loaded one, is skipped without hashing the file again: the trust git gives its index. The ctime
cannot be set back by any user command, so a rewrite in place changes it. A stat is recorded only when
the file had not changed for a second before it was read (coarse file-system timestamps could hide a
rewrite within the same tick otherwise). ``--force`` loads anyway.

``skip_if_unchanged`` is the command line's quick path for it: no psycopg (see pgwire.py), two
statements, then the run is recorded as skipped exactly as the ordinary path records it. Whenever it
cannot be sure (no recorded stat, another file, a connection pgwire cannot open), it returns None and
the ordinary path runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from deltapipe.errors import DeltapipeError

SETTLE_NS = 1_000_000_000
SKIP_REASON = "file unchanged since the last load (same SHA-256)"


def file_stat(path: Path) -> dict | None:
    """The stat to record for ``path`` (None when it changed in the last second: not to be trusted later)."""
    st = os.stat(path)
    if max(st.st_mtime_ns, st.st_ctime_ns) > time.time_ns() - SETTLE_NS:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino,
            "dev": st.st_dev}


def dataset_sql(name: str, stat: str) -> str:
    """(last_file_sha256, mode, trusted) of dataset ``name``: trusted when a load of a file with stat
    ``stat`` (SQL expressions) recorded that very SHA-256."""
    return ("SELECT d.last_file_sha256, d.mode, d.last_file_sha256 IS NOT NULL AND EXISTS ("
            "SELECT 1 FROM deltapipe.node_run n JOIN deltapipe.run r ON r.id = n.run_id "
            "WHERE n.node = d.name AND n.file_sha256 = d.last_file_sha256 AND r.args->'file_stat' = %s::jsonb) "
            "FROM deltapipe.dataset d WHERE d.name = %s" % (stat, name))


def skip_if_unchanged(dsn: str | None, dataset: str, path: str | Path, *, mode: str | None = None,
                      fmt: str | None = None, trigger: str = "cli", text_options: tuple = ()) -> dict | None:
    """Record a skipped load of ``path`` into ``dataset`` if the file is known unchanged; else None.

    ``text_options``: the CSV dialect options given (None when not), which a Parquet file refuses."""
    from deltapipe import pgwire
    from deltapipe.load.files import check_file, guess_format
    try:
        path = check_file(Path(path))
        stat = file_stat(path)
        if stat is None:
            return None
        from deltapipe.db import resolve_dsn
        real = resolve_dsn(dsn)
        fmt = guess_format(path, fmt)
        if fmt == "parquet" and any(o is not None for o in text_options):
            return None  # refused by the ordinary path
    except DeltapipeError:
        return None  # the ordinary path says it
    c = pgwire.connect(real)
    if c is None:
        return None
    lit = pgwire.literal
    try:
        rows = c.query(dataset_sql(lit(dataset), lit(json.dumps(stat))))
        if not rows or rows[0][2] != "t":
            return None
        sha, dmode = rows[0][0], rows[0][1]
        m = mode or dmode
        args = {"dataset": dataset, "file": str(path), "mode": m, "format": fmt, "file_sha256": sha,
                "file_stat": stat}
        rows = c.query(
            "WITH r AS (INSERT INTO deltapipe.run (kind, trigger, status, args, finished_at) "
            "VALUES ('load', %s, 'skipped', %s::jsonb, clock_timestamp()) RETURNING id) "
            "INSERT INTO deltapipe.node_run (run_id, node, node_kind, status, started_at, finished_at, mode, "
            "source_file, file_sha256, bytes, skip_reason) SELECT r.id, %s, 'load', 'skipped', clock_timestamp(), "
            "clock_timestamp(), %s, %s, %s, %d, %s FROM r RETURNING run_id"
            % (lit(trigger), lit(json.dumps(args)), lit(dataset), lit(m), lit(str(path)), lit(sha), stat["size"],
               lit(SKIP_REASON)))
        return {"node": dataset, "status": "skipped", "skip_reason": SKIP_REASON, "run_id": int(rows[0][0]),
                "mode": m, "source_file": str(path), "file_sha256": sha}
    except (pgwire.ServerError, pgwire.Unsupported, OSError, ValueError, IndexError):
        return None
    finally:
        c.close()


__all__ = ["file_stat", "dataset_sql", "skip_if_unchanged", "SKIP_REASON"]
