"""Resumable large loads: the file is staged in committed chunks of N lines, each
recorded in the load ledger (deltapipe.batch: byte offset and length, first line,
rows). `--resume` continues after the last committed chunk without reading the
earlier part again; the target is still published in one transaction at the end."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from deltapipe.errors import DeltapipeError
from deltapipe.load.badbytes import set_aside
from deltapipe.load.files import BLOCK, escape_blocks
from deltapipe.load.parallel_copy import Limited


def chunks(path: Path, lines: int, start: int = 0):
    """Byte ranges (offset, length, rows) of ``lines`` lines each (the last may be shorter),
    from byte ``start``; every range ends at a line end."""
    with open(path, "rb") as f:
        f.seek(start)
        chunk_start = pos_abs = start
        count = 0
        last = b"\n"
        while True:
            block = f.read(BLOCK)
            if not block:
                break
            last = block[-1:]
            i = 0
            while True:
                n = block.count(b"\n", i)
                if count + n < lines:
                    count += n
                    break
                for _ in range(lines - count):
                    i = block.find(b"\n", i) + 1
                yield chunk_start, pos_abs + i - chunk_start, lines
                chunk_start, count = pos_abs + i, 0
            pos_abs += len(block)
        if pos_abs > chunk_start:
            yield chunk_start, pos_abs - chunk_start, count + (0 if last == b"\n" else 1)


def stage_in_chunks(conn: psycopg.Connection, *, dataset: str, path: Path, stg: str, run_id: int, encoding: str,
                    lines: int, start: int = 0, first_line: int = 1, echo=None) -> int:
    """COPY the file from byte ``start`` into ``stg`` chunk by chunk, committing each chunk and its
    ledger row. Returns the number of lines staged."""
    stmt = "COPY %s (_dp_raw) FROM STDIN (FORMAT text, ENCODING %s)" % (stg, psycopg.sql.Literal(encoding).as_string(conn))
    total = 0
    with open(path, "rb") as f:
        for offset, length, rows in chunks(path, lines, start):
            f.seek(offset)
            with conn.transaction():
                # line numbers continue exactly where the last committed chunk ended (a chunk
                # cut short by a crash may have used up sequence values)
                conn.execute("SELECT setval(pg_get_serial_sequence(%s, '_dp_line'), %s::bigint, false)",
                             (stg, first_line + total))
                bad: list = []  # lines that are not valid text: staged as bytes, rejected (badbytes.py)
                with conn.cursor() as cur, cur.copy(stmt) as cp:
                    # the byte order mark exists only at offset 0; escape_blocks drops it there
                    for b in set_aside(escape_blocks(Limited(f, length), strip_bom=offset == 0),
                                       first_line + total, encoding, bad):
                        cp.write(b)
                if bad:
                    with conn.cursor() as cur, cur.copy("COPY %s (_dp_line, _dp_bytes) FROM STDIN" % stg) as cp:
                        for row in bad:
                            cp.write_row(row)
                conn.execute("INSERT INTO deltapipe.batch (run_id, dataset, source_file, byte_offset, byte_length, "
                             "first_line, rows, state) VALUES (%s, %s, %s, %s, %s, %s, %s, 'staged')",
                             (run_id, dataset, str(path), offset, length, first_line + total, rows))
            total += rows
            if echo:
                echo(offset + length)
    return total


def find_resumable(conn: psycopg.Connection, dataset: str, path: Path) -> dict | None:
    """The last unfinished chunked load of this dataset from this very file (same size and mtime)."""
    st = path.stat()
    row = conn.execute("""
        SELECT r.id, r.args, n.id
          FROM deltapipe.run r JOIN deltapipe.node_run n ON n.run_id = r.id AND n.node = %s
         WHERE r.args->>'dataset' = %s AND r.args ? 'staging' AND r.status IN ('failed', 'running')
           AND r.args->>'file' = %s AND (r.args->>'size')::bigint = %s AND r.args->>'mtime' = %s
           AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.backend_pid AND r.status = 'running')
         ORDER BY r.id DESC LIMIT 1""", (dataset, dataset, str(path), st.st_size, repr(st.st_mtime))).fetchone()
    if not row:
        return None
    run_id, args, nr_id = row
    staged, end, lines = conn.execute(
        "SELECT count(*), coalesce(max(byte_offset + byte_length), 0)::bigint, coalesce(sum(rows), 0)::bigint "
        "FROM deltapipe.batch WHERE run_id = %s", (run_id,)).fetchone()
    stg = args["staging"]
    intact = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (stg,)).fetchone()[0]
    if intact:
        intact = conn.execute("SELECT count(*) FROM %s" % stg).fetchone()[0] == lines
    return {"run_id": run_id, "node_run_id": nr_id, "args": args, "staging": stg, "chunks": staged,
            "offset": end, "lines": lines, "intact": intact}


__all__ = ["chunks", "stage_in_chunks", "find_resumable", "os", "time", "Jsonb", "DeltapipeError"]
