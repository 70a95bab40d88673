"""`deltapipe ingest NAME FILE.ndjson`: records of an NDJSON file (or stdin) through deltapipe.ingest.

The file's lines are JSON objects (blank lines are skipped): the dataset's columns plus an optional op.
They go to the server as one JSON array, in one call (one transaction, one run); the SQL does the rest
(coalescing per key, casts, rules, rejects, changeset).
"""

from __future__ import annotations

import json
import sys
from typing import IO

import psycopg

from deltapipe.db import connect, from_db, require_installed
from deltapipe.errors import DeltapipeError


def read_ndjson(stream: IO[str], name: str) -> str:
    """The lines of an NDJSON stream as the text of one JSON array. A line that is not JSON stops
    with its line number (objects are checked by the SQL, which names the element)."""
    parts = []
    for no, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as e:
            raise DeltapipeError("%s line %d is not valid JSON: %s" % (name, no, e), sqlstate="DP063",
                                 hint="one JSON object per line (NDJSON)") from None
        parts.append(line.strip())
    return "[" + ",".join(parts) + "]"


def ingest_file(dsn: str | None, dataset: str, path: str, options: dict | None = None, *,
                encoding: str = "utf8") -> dict:
    """Ingest the NDJSON file at path ('-': standard input) into dataset; returns the result of
    deltapipe.ingest."""
    if path == "-":
        rows = read_ndjson(sys.stdin, "stdin")
    else:
        try:
            with open(path, encoding=encoding) as f:
                rows = read_ndjson(f, path)
        except OSError as e:
            raise DeltapipeError("cannot read %s: %s" % (path, e.strerror or e), sqlstate="DP063") from None
    return ingest(dsn, dataset, rows, options)


def ingest(dsn: str | None, dataset: str, rows: str, options: dict | None = None) -> dict:
    """One call of deltapipe.ingest(dataset, rows, options), committed; rows is JSON text."""
    with connect(dsn) as conn:
        require_installed(conn)
        try:
            out = conn.execute("SELECT deltapipe.ingest(%s, %s::jsonb, %s::jsonb)",
                               (dataset, rows, json.dumps(options or {}))).fetchone()[0]
        except psycopg.Error as e:
            raise from_db(e) from e
        conn.commit()
    return out
