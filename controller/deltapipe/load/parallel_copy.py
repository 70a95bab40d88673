"""Stream a large file into its staging table over two connections at once.

COPY is bound by the server process that parses the lines, so a large file is
cut in two at a record boundary near its middle and each half is streamed by
its own connection: the first half into the load's staging table, inside the
load's transaction; the second into a staging table of its own, committed, whose
line numbers continue where the first half's stop. The load's transaction then
attaches it as an inheritance child of the first, so every statement reading
the staging table reads both halves, and dropping the staging table drops it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import psycopg

from deltapipe.db import connect
from deltapipe.errors import DeltapipeError
from deltapipe.load.files import BLOCK

MIN_SIZE = 32 << 20  # below this, one connection is as fast


class Limited:
    """A file object that ends after ``length`` bytes."""

    def __init__(self, f, length: int):
        self.f, self.left = f, length

    def read(self, n: int) -> bytes:
        if self.left <= 0:
            return b""
        b = self.f.read(min(n, self.left))
        self.left -= len(b)
        return b


def record_boundary(path: Path, target: int, quote: bytes | None) -> tuple[int, int]:
    """(offset, lines before it) of the first record start at or after ``target``; (0, 0) when there is none.

    A position is outside quotes when the number of quote characters before it is
    even (a doubled quote inside a field counts two), so one count per block suffices.
    """
    quotes = lines = pos = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(BLOCK)
            if not block:
                return 0, 0
            end = pos + len(block)
            if end > target:
                i = max(target - pos, 0)
                while True:
                    nl = block.find(b"\n", i)
                    if nl < 0:
                        break
                    if not quote or (quotes + block.count(quote, 0, nl)) % 2 == 0:
                        return pos + nl + 1, lines + block.count(b"\n", 0, nl + 1)
                    i = nl + 1
            if quote:
                quotes += block.count(quote)
            lines += block.count(b"\n")
            pos = end


def copy_in_halves(conn: psycopg.Connection, dsn: str | None, dataset: str, stg: str, path: Path, size: int,
                   copy_part: Callable[[psycopg.Connection, str, int, int, int], None],
                   glue_quote: bytes | None, committed: list) -> bool:
    """COPY ``path`` into ``stg`` over ``conn`` and a second connection; False when it cannot be cut (nothing done).

    ``copy_part(connection, table, start, length, first_line)`` streams one part. The second
    half's table is appended to ``committed``: should the load fail, the caller drops it.
    """
    mid, lines = record_boundary(path, size // 2, glue_quote)
    if mid <= 0 or mid >= size:
        return False
    done: dict = {}
    owner = conn.info.backend_pid

    def second_half() -> None:
        try:
            with connect(dsn) as c2:
                with c2.transaction():
                    t2 = c2.execute("SELECT deltapipe.stage(%s)", (dataset,)).fetchone()[0]
                    # registered to the load's session: alive as long as the load is
                    c2.execute("UPDATE deltapipe.staging SET backend_pid = %s "
                               "WHERE format('deltapipe_stage.%%I', table_name) = %s", (owner, t2))
                    c2.execute("ALTER TABLE %s ALTER COLUMN _dp_line RESTART WITH %d" % (t2, lines + 1))
                    copy_part(c2, t2, mid, size - mid, lines + 1)
                done["table"] = t2
                committed.append(t2)
        except BaseException as e:  # handed to the main thread
            done["error"] = e

    th = threading.Thread(target=second_half, name="deltapipe-copy-2", daemon=True)
    th.start()
    try:
        copy_part(conn, stg, 0, mid, 1)
    except BaseException:
        th.join()
        if "table" in done:  # committed on its own: do not leave it behind
            try:
                with connect(dsn, autocommit=True) as c3:
                    c3.execute("SELECT deltapipe.drop_stage(%s)", (done["table"],))
            except psycopg.Error:
                pass  # deltapipe maintain drops what a failed load left
        raise
    th.join()
    if "error" in done:
        err = done["error"]
        if isinstance(err, (psycopg.Error, DeltapipeError)):
            raise err
        raise DeltapipeError("the second COPY connection failed: %s" % err)
    t2 = done["table"]
    conn.execute("ALTER TABLE %s INHERIT %s" % (t2, stg))
    # from now on it is part of the load's staging table (dropped with it)
    conn.execute("DELETE FROM deltapipe.staging WHERE format('deltapipe_stage.%%I', table_name) = %s", (t2,))
    return True
