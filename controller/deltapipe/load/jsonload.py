"""Streamed JSON: load the arrays of one large JSON document (e.g. a graph {"nodes": [...], "edges": [...]})
into datasets, without ever holding the document: ijson yields one element at a time, each becomes one
NDJSON line COPYed into the dataset's staging table, and CALL deltapipe.load(..., {"format": "ndjson"})
validates, diffs and applies as for any file. One pass over the file per array; memory stays flat."""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from deltapipe.db import connect, from_db, require_installed
from deltapipe.errors import DeltapipeError
from deltapipe.load.files import MODES, check_file, file_sha256
from deltapipe.load.loader import _dead_runs, _fail, _record

BUF = 1 << 20


def _ijson():
    try:
        import ijson  # noqa: F401
    except ImportError as e:
        raise DeltapipeError("streaming JSON needs the ijson package", sqlstate="DP408",
                             hint="pip install ijson (or convert the arrays to NDJSON and use `deltapipe load`)") from e
    return ijson


def _default(o):
    if isinstance(o, Decimal):
        return str(o)  # exact: the dataset's column type does the cast
    raise TypeError(type(o).__name__)


def parse_arrays(specs: list[str]) -> list[tuple[str, str]]:
    """'nodes=people' or 'graph.nodes=people' -> (json path, dataset)."""
    out = []
    for s in specs:
        path, sep, ds = s.partition("=")
        if not sep or not path.strip() or not ds.strip():
            raise DeltapipeError("--array %s: expected PATH=DATASET, e.g. nodes=graph_nodes" % s, sqlstate="DP408")
        out.append((path.strip(), ds.strip()))
    return out


def ndjson_blocks(f, path: str, stats: dict):
    """COPY-text-escaped NDJSON lines of the elements of the array at `path`, in ~1 MB blocks."""
    ijson = _ijson()
    buf: list[str] = []
    size = 0
    for item in ijson.items(f, path + ".item"):
        if not isinstance(item, dict):
            stats["not_objects"] += 1
        line = json.dumps(item, default=_default, ensure_ascii=False, separators=(",", ":"))
        line = line.replace("\\", "\\\\") + "\n"
        buf.append(line)
        size += len(line)
        stats["elements"] += 1
        if size >= BUF:
            yield "".join(buf).encode()
            buf, size = [], 0
    if buf:
        yield "".join(buf).encode()


def load_json(dsn: str | None, file: str | Path, arrays: list[tuple[str, str]], *, mode: str | None = None,
              force: bool = False, trigger: str = "cli") -> list[dict]:
    """Load each (json path, dataset) of `arrays` from `file`; one load run per dataset."""
    _ijson()
    path = check_file(Path(file))
    if mode and mode not in MODES:
        raise DeltapipeError("unknown load mode %s" % mode, hint="use " + ", ".join(MODES))
    sha = file_sha256(path)
    size = path.stat().st_size
    results = []
    conn = connect(dsn, autocommit=True, application_name="deltapipe load-json")
    try:
        require_installed(conn)
        for jpath, dataset in arrays:
            row = conn.execute("SELECT last_file_sha256, mode FROM deltapipe.dataset WHERE name = %s",
                               (dataset,)).fetchone()
            if row is None:
                raise DeltapipeError("unknown dataset %s" % dataset, sqlstate="DP001",
                                     hint="create it with `deltapipe dataset create %s --key ... --columns ...`" % dataset)
        _dead_runs(conn)
        for jpath, dataset in arrays:
            src = "%s#%s" % (path, jpath)
            fsha = "%s:%s" % (sha, jpath)  # the same document may feed several datasets
            last, dmode = conn.execute("SELECT last_file_sha256, mode FROM deltapipe.dataset WHERE name = %s",
                                       (dataset,)).fetchone()
            m = mode or dmode
            run_id = conn.execute("INSERT INTO deltapipe.run (kind, trigger, status, args) VALUES ('load', %s, "
                                  "'running', %s) RETURNING id",
                                  (trigger, Jsonb({"dataset": dataset, "file": str(path), "json_path": jpath,
                                                   "mode": m, "format": "json"}))).fetchone()[0]
            nr_id = conn.execute("INSERT INTO deltapipe.node_run (run_id, node, node_kind, status, started_at, mode, "
                                 "source_file, file_sha256, bytes) VALUES (%s, %s, 'load', 'running', "
                                 "clock_timestamp(), %s, %s, %s, %s) RETURNING id",
                                 (run_id, dataset, m, src, fsha, size)).fetchone()[0]
            if not force and last == fsha:
                conn.execute("UPDATE deltapipe.node_run SET status = 'skipped', finished_at = clock_timestamp(), "
                             "skip_reason = 'file unchanged since the last load (same SHA-256)' WHERE id = %s", (nr_id,))
                conn.execute("UPDATE deltapipe.run SET status = 'skipped', finished_at = clock_timestamp() "
                             "WHERE id = %s", (run_id,))
                results.append(_record(conn, nr_id))
                continue
            stats = {"elements": 0, "not_objects": 0}
            options = {"mode": m, "format": "ndjson", "source_file": src, "file_sha256": fsha,
                       "run_id": run_id, "node_run_id": nr_id}
            try:
                with conn.transaction():
                    stg = conn.execute("SELECT deltapipe.stage(%s)", (dataset,)).fetchone()[0]
                    t0 = time.perf_counter()
                    with conn.cursor() as cur, cur.copy("COPY %s (_dp_raw) FROM STDIN" % stg) as cp, \
                            open(path, "rb") as f:
                        for block in ndjson_blocks(f, jpath, stats):
                            cp.write(block)
                    if stats["elements"] == 0:
                        raise DeltapipeError("%s: no array elements at JSON path %s" % (path, jpath), sqlstate="DP408",
                                             hint="give the path of an array of objects, e.g. nodes or graph.nodes")
                    options["copy_ms"] = round((time.perf_counter() - t0) * 1000, 1)
                    conn.execute("CALL deltapipe.load(%s, %s, %s)", (dataset, stg, Jsonb(options)))
            except psycopg.Error as e:
                err = from_db(e)
                _fail(conn, run_id, nr_id, err)
                raise err from e
            except DeltapipeError as e:
                _fail(conn, run_id, nr_id, e)
                raise
            except Exception as e:  # ijson's parse errors: one line, with where it stopped
                err = DeltapipeError("%s: invalid JSON: %s" % (path, str(e).splitlines()[0] if str(e) else type(e).__name__),
                                     sqlstate="DP408")
                _fail(conn, run_id, nr_id, err)
                raise err from e
            except BaseException as e:
                _fail(conn, run_id, nr_id, DeltapipeError("interrupted: %s" % type(e).__name__))
                raise
            conn.execute("UPDATE deltapipe.run SET status = 'done', finished_at = clock_timestamp() WHERE id = %s",
                         (run_id,))
            r = _record(conn, nr_id)
            r["json_path"] = jpath
            r["elements"] = stats["elements"]
            results.append(r)
        return results
    finally:
        conn.close()


def peak_rss_kb() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


__all__ = ["load_json", "parse_arrays", "peak_rss_kb", "os"]
