"""Load one file into a dataset: stream it into a staging table with COPY, then
CALL deltapipe.load() which validates, diffs and applies inside PostgreSQL.

The controller never holds the file: it reads fixed-size blocks, escapes them
for COPY's text format (one raw line per row) and sends them on.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psycopg
from psycopg.types.json import Jsonb

from deltapipe.db import connect, from_db, require_installed
from deltapipe.errors import DeltapipeError
from deltapipe.load.badbytes import BAD_BYTES_SQLSTATES, set_aside
from deltapipe.load.glue import glue_records
from deltapipe.load.linecount import LineCount
from deltapipe.load.retry import _alive, retrying
from deltapipe.load.files import BLOCK, EXT_FORMATS, FORMATS, MODES, check_file, escape_blocks, file_sha256, guess_format  # noqa: F401
from deltapipe.load.formats import check_options
from deltapipe.load.unchanged import dataset_sql, file_stat

@dataclass
class LoadOptions:
    mode: str | None = None
    format: str | None = None
    delimiter: str | None = None
    quote: str | None = None
    null: str | None = None
    encoding: str = "utf8"
    header: bool = True
    op_column: str | None = None
    order_column: str | None = None
    strategy: str | None = None
    force: bool = False
    allow_empty: bool = False
    max_rejects: str | None = None
    on_schema_change: str = "fail"
    commit_every: int | None = None
    resume: bool = False
    extra: dict = field(default_factory=dict)


def _in_thread(fn, *args) -> Callable[[], object]:
    """Start ``fn(*args)`` in a thread; the returned function waits for its result (or raises its error)."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn(*args)
        except BaseException as e:
            out["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()

    def result():
        th.join()
        if "error" in out:
            raise out["error"]
        return out["value"]
    return result


def _dead_runs(conn: psycopg.Connection) -> None:
    """Mark runs whose controller connection is gone as failed (they can never finish)."""
    conn.execute("""
        UPDATE deltapipe.run r SET status = 'failed', finished_at = clock_timestamp(),
               error = coalesce(error, 'the controller went away before the run finished')
         WHERE r.status = 'running'
           AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.backend_pid)""")
    conn.execute("""
        UPDATE deltapipe.node_run n SET status = 'failed', finished_at = clock_timestamp(),
               error = coalesce(n.error, 'the run died')
          FROM deltapipe.run r
         WHERE r.id = n.run_id AND r.status = 'failed' AND n.status IN ('running', 'pending')""")
    # staging tables a killed load committed on the side (a chunk, a second COPY half)
    conn.execute("SELECT deltapipe._drop_dead_staging()")


def load_file(dsn: str | None, dataset: str, path: str | Path, opts: LoadOptions | None = None, *,
              progress: bool | None = None, trigger: str = "cli") -> dict:
    """Load ``path`` into ``dataset``. Returns the node_run record as a dict."""
    opts = opts or LoadOptions()
    path = check_file(Path(path))
    fmt = guess_format(path, opts.format)
    if opts.max_rejects is not None and not re.match(r"^\d+(\.\d+)?%$|^\d+$", opts.max_rejects.strip()):
        raise DeltapipeError("invalid reject limit %r" % opts.max_rejects,
                             hint="give a number of rows (10) or a share of the rows read (2.5%)", sqlstate="DP006")
    if opts.on_schema_change not in ("fail", "add-columns"):
        raise DeltapipeError("unknown --on-schema-change %s" % opts.on_schema_change, hint="use fail or add-columns")
    if opts.mode and opts.mode not in MODES:
        raise DeltapipeError("unknown load mode %s" % opts.mode, hint="use " + ", ".join(MODES))
    size = path.stat().st_size
    if opts.commit_every is not None and opts.commit_every < 1:
        raise DeltapipeError("--commit-every needs a positive number of lines")
    kind = check_options(path, fmt, opts)  # compressed or Parquet: streamed whole (formats.py)
    # a resumed load does not read the part of the file already staged (not even to hash it);
    # a resumable one needs the hash before it starts
    sha = file_sha256(path) if opts.commit_every and not opts.resume else None
    sha_later = None

    conn = connect(dsn, autocommit=True)
    try:
        require_installed(conn)
        stat = file_stat(path)  # before the file is read (unchanged.py)
        row = conn.execute(dataset_sql("%s", "%s"), (stat and Jsonb(stat), dataset)).fetchone()
        if row is None:
            raise DeltapipeError("unknown dataset %s" % dataset,
                                 hint="create it with `deltapipe dataset create`; list them with `deltapipe dataset list`",
                                 sqlstate="DP001")
        _dead_runs(conn)
        mode = opts.mode or row[1]
        resume = None
        if opts.resume:
            from deltapipe.load.resumable import find_resumable
            resume = find_resumable(conn, dataset, path)
            if resume is None:
                raise DeltapipeError("nothing to resume for dataset %s from %s" % (dataset, path),
                                     hint="a resumable load is started with --commit-every N; the file must be unchanged")
            run_id, nr_id, sha = resume["run_id"], resume["node_run_id"], resume["args"]["file_sha256"]
            mode = resume["args"]["mode"]
            conn.execute("UPDATE deltapipe.run SET status = 'running', finished_at = NULL, error = NULL, "
                         "backend_pid = pg_backend_pid() WHERE id = %s", (run_id,))
            conn.execute("UPDATE deltapipe.node_run SET status = 'running', finished_at = NULL, error = NULL "
                         "WHERE id = %s", (nr_id,))
        else:
            if sha is None:
                # the SHA-256 decides whether the file is the one loaded last, unless its size already
                # says it is not: then it is computed while the file streams, on another core
                last = row[0] and conn.execute(
                    "SELECT bytes FROM deltapipe.node_run WHERE node = %s AND file_sha256 = %s "
                    "ORDER BY id DESC LIMIT 1", (dataset, row[0])).fetchone()
                if last and last[0] not in (None, size):
                    sha_later = _in_thread(file_sha256, path)
                elif not last and row[0] is None:
                    sha_later = _in_thread(file_sha256, path)
                else:  # not read again when its stat is the one recorded with that SHA-256
                    sha = row[0] if row[2] else file_sha256(path)
            args = {"dataset": dataset, "file": str(path), "mode": mode, "format": fmt, "file_sha256": sha,
                    "file_stat": stat}
            run_id = conn.execute("INSERT INTO deltapipe.run (kind, trigger, status, args) "
                                  "VALUES ('load', %s, 'running', %s) RETURNING id", (trigger, Jsonb(args))).fetchone()[0]
            nr_id = conn.execute("INSERT INTO deltapipe.node_run (run_id, node, node_kind, status, started_at, mode, "
                                 "source_file, file_sha256, bytes) VALUES (%s, %s, 'load', 'running', clock_timestamp(), "
                                 "%s, %s, %s, %s) RETURNING id",
                                 (run_id, dataset, mode, str(path), sha, size)).fetchone()[0]
            if not opts.force and sha is not None and row[0] == sha:
                conn.execute("UPDATE deltapipe.node_run SET status = 'skipped', finished_at = clock_timestamp(), "
                             "skip_reason = 'file unchanged since the last load (same SHA-256)' WHERE id = %s", (nr_id,))
                conn.execute("UPDATE deltapipe.run SET status = 'skipped', finished_at = clock_timestamp() WHERE id = %s",
                             (run_id,))
                return _record(conn, nr_id)

        options = {"mode": mode, "format": fmt, "header": opts.header, "source_file": str(path),
                   "file_sha256": sha, "run_id": run_id, "node_run_id": nr_id}
        if fmt == "parquet":  # streamed as CSV lines, one record per line (parquet.py)
            options.update(format="csv", glued=True)
        for key in ("delimiter", "quote", "null", "op_column", "order_column", "strategy", "max_rejects"):
            val = getattr(opts, key)
            if val is not None:
                options[key] = val
        if opts.allow_empty:
            options["allow_empty"] = True
        options.update(opts.extra)
        show = sys.stderr.isatty() if progress is None else progress

        chunked = opts.commit_every or (resume and resume["args"].get("commit_every"))
        quote = opts.quote if opts.quote is not None else ('"' if fmt == "csv" else "")
        # records spanning lines are glued while streaming (see glue.py) when the quote is one ASCII character
        delim = opts.delimiter if opts.delimiter is not None else ("\t" if fmt == "tsv" else ",")
        glue_quote = (quote.encode() if fmt in ("csv", "tsv") and len(quote) == 1 and quote.isascii() and quote != delim
                      else None)  # else the database glues them (and refuses bad options with a clear error)
        if chunked:
            stg = _stage_chunked(conn, dataset, path, run_id, nr_id, opts, resume, int(chunked), options, show, size)

        second_halves: list[str] = []  # staging tables committed by a second COPY connection
        # records that are not valid text: looked for only once a plain COPY refused the file (badbytes.py)
        bad_bytes: dict = {"on": False, "copying": False}

        def attempt(c: psycopg.Connection) -> None:
            try:
                attempt_once(c)
            except psycopg.Error as e:
                if not bad_bytes["copying"] or bad_bytes["on"] or e.sqlstate not in BAD_BYTES_SQLSTATES:
                    raise
                bad_bytes["on"] = True  # the transaction is rolled back: stream the file again, setting them aside
                attempt_once(c)

        def attempt_once(c: psycopg.Connection) -> None:
            while second_halves:  # left by a previous try that failed
                c.execute("SELECT deltapipe.drop_stage(%s)", (second_halves.pop(),))
            with c.transaction():
                if opts.on_schema_change == "add-columns":
                    added = _add_new_columns(c, dataset, path, fmt, opts)
                    if added:
                        options["added_columns"] = added
                if chunked:
                    c.execute("CALL deltapipe.load(%s, %s, %s)", (dataset, stg, Jsonb(options)))
                    c.execute("UPDATE deltapipe.batch SET state = 'published' WHERE run_id = %s", (run_id,))
                    return
                stg_ = c.execute("SELECT deltapipe.stage(%s)", (dataset,)).fetchone()[0]
                t0 = time.perf_counter()
                bad = [] if bad_bytes["on"] else None
                bad_bytes["copying"] = True
                lines = _copy(c, stg_, path, opts.encoding, size, show and size > (16 << 20), glue_quote, dsn,
                              dataset=None if kind else dataset, committed=second_halves, bad=bad, fmt=fmt)
                bad_bytes["copying"] = False
                if bad is not None:
                    options["bytes_lines"] = len(bad)
                    options["encoding"] = opts.encoding
                if glue_quote:
                    options["glued"] = True
                options["staged_lines"] = lines  # non-empty ones: the database need not count them
                options["copy_ms"] = round((time.perf_counter() - t0) * 1000, 1)
                if sha_later:
                    options["file_sha256"] = sha_later()
                    c.execute("UPDATE deltapipe.node_run SET file_sha256 = %s WHERE id = %s",
                              (options["file_sha256"], nr_id))
                    c.execute("UPDATE deltapipe.run SET args = jsonb_set(args, '{file_sha256}', to_jsonb(%s::text)) "
                              "WHERE id = %s", (options["file_sha256"], run_id))
                c.execute("CALL deltapipe.load(%s, %s, %s)", (dataset, stg_, Jsonb(options)))

        try:
            conn = retrying(attempt, conn, dsn, run_id, nr_id)
        except psycopg.Error as e:
            err = from_db(e)
            conn = _alive(conn, dsn)
            _fail(conn, run_id, nr_id, err, second_halves)
            raise err from e
        except DeltapipeError as err:  # found in the file while streaming it (glue.py)
            conn = _alive(conn, dsn)
            _fail(conn, run_id, nr_id, err, second_halves)
            raise
        except BaseException as e:  # KeyboardInterrupt included: record, then re-raise
            conn = _alive(conn, dsn)
            _fail(conn, run_id, nr_id, DeltapipeError("interrupted: %s" % type(e).__name__), second_halves)
            raise
        conn.execute("UPDATE deltapipe.run SET status = 'done', finished_at = clock_timestamp() WHERE id = %s", (run_id,))
        return _record(conn, nr_id)
    finally:
        conn.close()


def _stage_chunked(conn: psycopg.Connection, dataset: str, path: Path, run_id: int, nr_id: int, opts: LoadOptions,
                   resume: dict | None, lines: int, options: dict, show: bool, size: int) -> str:
    """Stage the file in committed chunks (or continue a resumed load). Returns the staging table."""
    import click

    from deltapipe.load.resumable import stage_in_chunks
    start, first = 0, 1
    if resume and resume["intact"]:
        stg, start, first = resume["staging"], resume["offset"], resume["lines"] + 1
        click.echo("resuming run %s after %d committed chunk(s), at byte %d (line %d)"
                   % (run_id, resume["chunks"], start, first), err=True)
    else:
        if resume:
            click.echo("the staged part of run %s is gone (server restart?): staging again from the start" % run_id,
                       err=True)
            conn.execute("DELETE FROM deltapipe.batch WHERE run_id = %s", (run_id,))
            conn.execute("SELECT deltapipe.drop_stage(%s)", (resume["staging"],))
        stg = conn.execute("SELECT deltapipe.stage(%s)", (dataset,)).fetchone()[0]
        st = path.stat()
        conn.execute("UPDATE deltapipe.run SET args = args || %s WHERE id = %s",
                     (Jsonb({"staging": stg, "staging_table": stg.split(".", 1)[1].strip('"'), "size": st.st_size,
                             "mtime": repr(st.st_mtime), "commit_every": lines}), run_id))
    t0 = time.perf_counter()
    bar = None
    if show and size > (16 << 20):
        bar = click.progressbar(length=size, label="stage %s" % path.name, file=sys.stderr)
        bar.__enter__()
        bar.update(start)
    try:
        done = [start]

        def progress(end: int) -> None:
            if bar:
                bar.update(end - done[0])
            done[0] = end
        stage_in_chunks(conn, dataset=dataset, path=path, stg=stg, run_id=run_id, encoding=opts.encoding,
                        lines=lines, start=start, first_line=first, echo=progress)
    finally:
        if bar:
            bar.__exit__(None, None, None)
    options["copy_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return stg


def _add_new_columns(conn: psycopg.Connection, dataset: str, path: Path, fmt: str, opts: LoadOptions) -> list:
    """Columns of the file's header that the dataset lacks: add them, typed by inference."""
    from deltapipe.load.infer import columns_spec, infer_columns
    if not opts.header and fmt != "ndjson":
        return []
    have = {c["name"] for c in conn.execute("SELECT columns FROM deltapipe.dataset WHERE name = %s",
                                            (dataset,)).fetchone()[0]}
    skip = {opts.op_column or "op"} if (opts.mode == "changes") else set()
    cols = infer_columns(path, fmt, delimiter=opts.delimiter, quote=opts.quote, encoding=opts.encoding)
    new = [(n, t) for n, t in cols if n not in have and n not in skip]
    if not new:
        return []
    return conn.execute("SELECT deltapipe.add_columns(%s, %s)", (dataset, columns_spec(new))).fetchone()[0]


def _copy(conn: psycopg.Connection, stg: str, path: Path, encoding: str, size: int, show: bool,
          glue_quote: bytes | None = None, dsn: str | None = None, dataset: str | None = None,
          committed: list | None = None, bad: list | None = None, fmt: str = "csv") -> int:
    """COPY the file's lines into staging table ``stg``; returns the number of non-empty rows staged.

    Multi-line records are glued on the way when ``glue_quote`` is given (see glue.py). With
    ``bad`` (a list), records that are not valid text are set aside into it and staged as bytes
    (see badbytes.py): they are not counted.

    With ``dataset`` given, a large file goes over two connections at once (see parallel_copy.py).
    """
    from deltapipe.load.files import copy_source
    from deltapipe.load.parallel_copy import MIN_SIZE, copy_in_halves

    # FREEZE: the staging table was created in this transaction, so its rows can be
    # written frozen (no hint bits to set, no page dirtied again, when it is read)
    stmt = "COPY %%s (_dp_raw) FROM STDIN (FORMAT text, ENCODING %s, FREEZE true)" % (
        psycopg.sql.Literal(encoding).as_string(conn))
    bar = None
    lock = threading.Lock()
    if show:
        import click
        bar = click.progressbar(length=size, label="copy %s" % path.name, file=sys.stderr)
        bar.__enter__()

    def on_bytes(n: int) -> None:
        with lock:
            bar.update(n)

    def part(c: psycopg.Connection, table: str, start: int, length: int, first_line: int) -> None:
        count = LineCount()
        with c.cursor() as cur, cur.copy(stmt % table) as cp, \
                copy_source(path, fmt, start, length, on_bytes if bar else None) as blocks:
            if bad is not None:
                stream = glue_records(blocks, glue_quote, first_line) if glue_quote else blocks
                for chunk in set_aside(stream, first_line, encoding, bad):
                    cp.write(count.add(chunk))
            elif glue_quote:
                for chunk in glue_records(blocks, glue_quote, first_line, count):
                    cp.write(chunk)
            else:
                for chunk in blocks:
                    cp.write(count.add(chunk))
        with lock:
            counts.append(count.nonempty)

    counts: list[int] = []  # non-empty lines of each part
    try:
        min_size = int(os.environ.get("DELTAPIPE_PARALLEL_COPY_MIN", MIN_SIZE))
        if not (dataset and size >= min_size and copy_in_halves(conn, dsn, dataset, stg, path, size, part, glue_quote,
                                                                       committed if committed is not None else [])):
            part(conn, stg, 0, size, 1)
    finally:
        if bar:
            bar.__exit__(None, None, None)
    if bad:
        with conn.cursor() as cur, cur.copy("COPY %s (_dp_line, _dp_bytes) FROM STDIN" % stg) as cp:
            for row in sorted(bad):
                cp.write_row(row)
    return sum(counts)


def _fail(conn: psycopg.Connection, run_id: int, nr_id: int, err: DeltapipeError, leftovers: list | None = None) -> None:
    """Record the failure; drop staging tables committed on the side (``leftovers``)."""
    for t in leftovers or ():
        try:
            conn.execute("SELECT deltapipe.drop_stage(%s)", (t,))
        except psycopg.Error:
            pass  # deltapipe maintain drops what a failed load left
    try:
        conn.execute("UPDATE deltapipe.node_run SET status = 'failed', finished_at = clock_timestamp(), "
                     "error = %s, sqlstate = %s WHERE id = %s", (err.one_line(), err.sqlstate, nr_id))
        conn.execute("UPDATE deltapipe.run SET status = 'failed', finished_at = clock_timestamp(), "
                     "error = %s, sqlstate = %s WHERE id = %s", (err.one_line(), err.sqlstate, run_id))
    except psycopg.Error:
        pass


def _record(conn: psycopg.Connection, nr_id: int) -> dict:
    cur = conn.execute("SELECT n.*, d.row_count FROM deltapipe.node_run n "
                       "LEFT JOIN deltapipe.dataset d ON d.name = n.node WHERE n.id = %s", (nr_id,))
    names = [c.name for c in cur.description]
    return dict(zip(names, cur.fetchone()))
