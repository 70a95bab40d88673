"""`deltapipe run`: load changed source files, then refresh the models, with N workers.

The run is a queue in the database (deltapipe.start_run): one node_run per node.
Each worker is a thread with its own connection; it claims a ready node
(deltapipe._claim_node, FOR UPDATE SKIP LOCKED), executes it (a source: the
load path; a model: deltapipe.run_node, the same routine CALL
deltapipe.run_pipeline uses), and claims again. One run per pipeline at a time
(a session advisory lock, the same key deltapipe.run_pipeline takes).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from deltapipe import pipeline as pl
from deltapipe.db import connect, require_installed, resolve_dsn
from deltapipe.errors import DeltapipeError, from_db

TRANSIENT = {"40001", "40P01", "55P03"}
LOCK_SQL = "hashtext('deltapipe.pipeline'), hashtext(%s)"


def parse_select(selects: list[str], p: pl.Pipeline) -> list[str] | None:
    """MODEL, MODEL+ (and downstream), +MODEL (and upstream), +MODEL+."""
    if not selects:
        return None
    down: dict[str, set[str]] = {n: set() for n in p.models}
    for m in p.models.values():
        for up, kind in m.upstreams.items():
            if kind == "model":
                down[up].add(m.name)
    chosen: set[str] = set()
    for sel in selects:
        for item in [x.strip() for x in sel.split(",") if x.strip()]:
            name = item.strip("+").lower()
            if name not in p.models:
                raise DeltapipeError("--select %s: unknown model %s" % (item, name), sqlstate="DP203",
                                     hint="models: %s" % ", ".join(sorted(p.models)))
            chosen.add(name)
            if item.endswith("+"):
                todo = [name]
                while todo:
                    for d in down[todo.pop()]:
                        if d not in chosen:
                            chosen.add(d)
                            todo.append(d)
            if item.startswith("+"):
                todo = [name]
                while todo:
                    for u, k in p.models[todo.pop()].upstreams.items():
                        if k == "model" and u not in chosen:
                            chosen.add(u)
                            todo.append(u)
    return sorted(chosen)


def _pipeline_from_catalog(conn, name: str) -> pl.Pipeline:
    row = conn.execute("SELECT root FROM deltapipe.pipeline WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise DeltapipeError("unknown pipeline %s" % name, sqlstate="DP201",
                             hint="give the pipeline directory, or deploy it with `deltapipe deploy DIR`")
    if not row[0] or not Path(row[0]).is_dir():
        raise DeltapipeError("pipeline %s: its directory %s is gone" % (name, row[0]), sqlstate="DP214",
                             hint="give the pipeline directory")
    return pl.load(row[0], conn)


def run(dsn: str | None, target: str, *, workers: int = 1, select: list[str] | None = None,
        keep_going: bool = False, full_refresh: bool = False, resume: int | None = None, wait: bool = False,
        trigger: str = "cli", deploy: bool = True, on_event=None, incremental_threshold: float | None = None) -> dict:
    """Run a pipeline (a directory, or the name of a deployed pipeline). Returns the run with its nodes."""
    real = resolve_dsn(dsn)
    conn = connect(real, autocommit=True, application_name="deltapipe run")
    try:
        require_installed(conn)
        if Path(target).is_dir():
            p = pl.load(target, conn)
            if deploy:
                pl.deploy(conn, p)
        else:
            p = _pipeline_from_catalog(conn, target)
        if not conn.execute("SELECT pg_try_advisory_lock(%s)" % LOCK_SQL, (p.name,)).fetchone()[0]:
            other = conn.execute("SELECT id, started_at FROM deltapipe.run WHERE pipeline = %s AND status = 'running' "
                                 "ORDER BY id DESC LIMIT 1", (p.name,)).fetchone()
            if not wait:
                raise DeltapipeError("pipeline %s is already running%s" % (
                    p.name, " (run %d, started %s)" % (other[0], other[1].strftime("%H:%M:%S")) if other else ""),
                    sqlstate="DP202", hint="pass --wait to wait for it")
            if on_event:
                on_event("waiting for the running pipeline %s to finish..." % p.name)
            conn.execute("SELECT pg_advisory_lock(%s)" % LOCK_SQL, (p.name,))
        try:
            if resume is not None:
                run_id = _reset_for_resume(conn, p.name, resume)
            else:
                models = parse_select(select or [], p)
                wanted = set(models) if models is not None else set(p.models)
                sources = [s for s in p.sources if models is None or
                           any(p.models[m].upstreams.get(s) == "source" for m in wanted)]
                args = {"workers": workers, "keep_going": keep_going, "full_refresh": full_refresh,
                        "select": select or [], "root": str(p.root.resolve())}
                if incremental_threshold is not None:
                    args["incremental_threshold"] = incremental_threshold
                run_id = conn.execute("SELECT deltapipe.start_run(%s, %s, %s, %s, %s)",
                                      (p.name, trigger, Jsonb(args), models, sources)).fetchone()[0]
            if on_event:
                on_event("run %d: pipeline %s, %d workers" % (run_id, p.name, workers))
            _work(real, run_id, p, max(1, workers), on_event)
            conn.execute("SELECT deltapipe._finish_run(%s)", (run_id,))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)" % LOCK_SQL, (p.name,))
        return run_record(conn, run_id)
    except psycopg.Error as e:
        raise from_db(e) from e
    finally:
        conn.close()


def _reset_for_resume(conn, pipeline: str, run_id: int) -> int:
    row = conn.execute("SELECT pipeline, kind, status FROM deltapipe.run WHERE id = %s", (run_id,)).fetchone()
    if row is None or row[1] != "pipeline":
        raise DeltapipeError("unknown pipeline run %s" % run_id, sqlstate="DP205", hint="list runs with `deltapipe runs`")
    if row[0] != pipeline:
        raise DeltapipeError("run %s belongs to pipeline %s, not %s" % (run_id, row[0], pipeline), sqlstate="DP205")
    if row[2] == "done":
        raise DeltapipeError("run %s already finished" % run_id, sqlstate="DP205", hint="start a new run")
    with conn.transaction():
        conn.execute("""UPDATE deltapipe.node_run SET status = 'pending', started_at = NULL, finished_at = NULL,
                               error = NULL, sqlstate = NULL, skip_reason = NULL, worker = NULL
                         WHERE run_id = %s AND (status IN ('pending', 'running', 'failed')
                               OR (status = 'skipped' AND (skip_reason LIKE 'upstream %%' OR skip_reason LIKE 'run stopped%%')))""",
                     (run_id,))
        conn.execute("UPDATE deltapipe.run SET status = 'running', finished_at = NULL, error = NULL, sqlstate = NULL, "
                     "backend_pid = pg_backend_pid(), args = args || '{\"resumed\": true}' WHERE id = %s", (run_id,))
    return run_id


def _work(dsn: str, run_id: int, p: pl.Pipeline, workers: int, on_event) -> None:
    errors: list[BaseException] = []

    def worker(i: int):
        try:
            _worker_loop(_WorkerConn(dsn, "deltapipe worker %d" % i), dsn, run_id, p, "w%d" % i, on_event)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    if workers == 1:
        worker(1)
    else:
        threads = [threading.Thread(target=worker, args=(i + 1,), daemon=True) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        e = errors[0]
        if isinstance(e, psycopg.Error):
            raise from_db(e) from e
        raise e


class _WorkerConn:
    """A worker's connection that comes back after the server dropped it (terminated
    backend, restart): the worker reconnects within a time budget instead of dying with
    its node left 'running', which would leave the other workers waiting for ever."""

    BUDGET_S = 60.0

    def __init__(self, dsn: str, app: str):
        self.dsn, self.app = dsn, app
        self.conn = self._connect()

    def _connect(self) -> psycopg.Connection:
        start = time.monotonic()
        while True:
            try:
                return psycopg.connect(self.dsn, autocommit=True, application_name=self.app)
            except psycopg.OperationalError:
                if time.monotonic() - start > self.BUDGET_S:
                    raise
                time.sleep(0.5)

    @property
    def lost(self) -> bool:
        return self.conn.closed or self.conn.broken

    def reconnect(self) -> None:
        try:
            self.conn.close()
        finally:
            self.conn = self._connect()

    def execute(self, *a, **kw):
        if self.lost:
            self.reconnect()
        return self.conn.execute(*a, **kw)


def _worker_loop(wc, dsn: str, run_id: int, p: pl.Pipeline, name: str, on_event) -> None:
    idle = 0.002
    while True:
        row = wc.execute("SELECT * FROM deltapipe._claim_node(%s, %s)", (run_id, name)).fetchone()
        if row is None or row[0] is None:
            pending, running, ready = wc.execute(
                """SELECT count(*) FILTER (WHERE c.status = 'pending'), count(*) FILTER (WHERE c.status = 'running'),
                          count(*) FILTER (WHERE c.status = 'pending' AND NOT EXISTS (
                              SELECT 1 FROM deltapipe.node_run u WHERE u.run_id = c.run_id AND u.node = ANY (c.upstreams)
                                 AND u.status NOT IN ('done', 'skipped')))
                     FROM deltapipe.node_run c WHERE c.run_id = %s""", (run_id,)).fetchone()
            if pending == 0:
                return
            if running == 0 and ready == 0:
                # one snapshot: nothing runs and nothing can become ready
                wc.execute("UPDATE deltapipe.node_run SET status = 'skipped', finished_at = clock_timestamp(), "
                           "skip_reason = 'an upstream did not finish' WHERE run_id = %s AND status = 'pending'",
                           (run_id,))
                return
            time.sleep(idle)
            idle = min(idle * 2, 0.05)
            continue
        idle = 0.002
        nr_id, node, kind = row
        if kind == "load":
            _run_source(wc, dsn, nr_id, p, node)
        else:
            _run_model(wc, nr_id, node)
        if on_event:
            st = wc.execute("SELECT status, coalesce(skip_reason, error, '') FROM deltapipe.node_run WHERE id = %s",
                            (nr_id,)).fetchone()
            on_event("  %-24s %-8s %s" % (node, st[0], st[1]))


def _run_model(wc, nr_id: int, node: str) -> None:
    """Run one model node; transient errors and a lost backend (its work rolled back with it)
    are retried with backoff, anything else fails the node."""
    delay = 0.05
    for attempt in range(5):
        try:
            wc.execute("SELECT deltapipe.run_node(%s)", (nr_id,))
            return
        except psycopg.Error as e:
            lost = isinstance(e, psycopg.OperationalError) and wc.lost
            err = from_db(e)
            if (lost or err.sqlstate in TRANSIENT) and attempt < 4:
                time.sleep(delay + random.random() * delay)
                delay *= 2
                if lost:
                    wc.reconnect()
                continue
            if lost:
                wc.reconnect()
            wc.execute("SELECT deltapipe._node_failed(%s, %s, %s)", (nr_id, err.one_line(), err.sqlstate))
            return


def _run_source(wc, dsn: str, nr_id: int, p: pl.Pipeline, node: str) -> None:
    from deltapipe.load.loader import LoadOptions, load_file
    s = p.sources[node]
    paths = s.paths(p.root)
    try:
        if not paths or not all(x.exists() for x in paths):
            raise DeltapipeError("source %s: no file matches %s" % (node, s.files), sqlstate="DP214")
        totals = {k: 0 for k in ("rows_in", "inserted", "updated", "deleted", "unchanged", "rejected", "duplicates")}
        statuses, loads = [], []
        if len(paths) == 1:
            # an unchanged file is skipped here, on the worker's connection: no load of its own (a
            # connection, dead-run housekeeping and run rows cost ~20 ms per source of a no-change run)
            from deltapipe.load.files import file_sha256
            last = wc.execute("SELECT last_file_sha256 FROM deltapipe.dataset WHERE name = %s", (node,)).fetchone()
            if last and last[0] and file_sha256(paths[0]) == last[0]:
                paths_to_load = []
                statuses.append("skipped")
            else:
                paths_to_load = paths
        else:
            paths_to_load = paths
        for path in paths_to_load:
            o = s.options
            opts = LoadOptions(mode=s.mode, format=o.get("format"), delimiter=o.get("delimiter"), quote=o.get("quote"),
                               null=o.get("null"), encoding=o.get("encoding", "utf8"), op_column=o.get("op_column"),
                               order_column=o.get("order_column"))
            r = load_file(dsn, node, path, opts, progress=False, trigger="cli")
            statuses.append(r["status"])
            loads.append(r["run_id"])
            for k in totals:
                totals[k] += r.get(k) or 0
        status = "skipped" if all(x == "skipped" for x in statuses) else "done"
        wc.execute("""UPDATE deltapipe.node_run SET status = %s, finished_at = clock_timestamp(),
                             rows_in = %s, inserted = %s, updated = %s, deleted = %s, unchanged = %s, rejected = %s,
                             duplicates = %s, source_file = %s, mode = %s,
                             skip_reason = CASE WHEN %s = 'skipped' THEN 'file unchanged since the last load (same SHA-256)' END,
                             phases = %s,
                             output_checksum = (SELECT checksum FROM deltapipe.dataset WHERE name = %s)
                       WHERE id = %s""",
                   (status, totals["rows_in"], totals["inserted"], totals["updated"], totals["deleted"],
                    totals["unchanged"], totals["rejected"], totals["duplicates"], ", ".join(str(x) for x in paths),
                    s.mode, status, Jsonb({"load_runs": loads}), node, nr_id))
    except DeltapipeError as e:
        wc.execute("SELECT deltapipe._node_failed(%s, %s, %s)", (nr_id, e.one_line(), e.sqlstate))


def run_record(conn, run_id: int) -> dict:
    cur = conn.execute("SELECT * FROM deltapipe.run WHERE id = %s", (run_id,))
    names = [c.name for c in cur.description]
    run = dict(zip(names, cur.fetchone()))
    cur = conn.execute("SELECT * FROM deltapipe.node_run WHERE run_id = %s ORDER BY started_at NULLS LAST, id", (run_id,))
    names = [c.name for c in cur.description]
    run["nodes"] = [dict(zip(names, r)) for r in cur.fetchall()]
    return run


def timeline(run: dict, width: int = 40) -> list[str]:
    """A text timeline of a run's nodes: one bar per node on a common time axis."""
    nodes = [n for n in run["nodes"] if n["started_at"]]
    if not nodes:
        return ["  (no node started)"]
    t0 = min(n["started_at"] for n in nodes)
    t1 = max((n["finished_at"] or n["started_at"]) for n in nodes)
    span = max((t1 - t0).total_seconds(), 1e-6)
    out = ["  %-22s %-8s %9s %9s %9s  %-*s" % ("NODE", "STATUS", "START", "END", "DURATION", width, "|0 .. %.2fs|" % span)]
    for n in sorted(nodes, key=lambda x: (x["started_at"], x["id"])):
        s = (n["started_at"] - t0).total_seconds()
        e = ((n["finished_at"] or n["started_at"]) - t0).total_seconds()
        a = int(s / span * width)
        b = max(a + 1, int(round(e / span * width)))
        bar = " " * a + ("#" if n["status"] == "done" else "x" if n["status"] == "failed" else "-") * (b - a)
        out.append("  %-22s %-8s %8.3fs %8.3fs %8.3fs  |%-*s|" % (n["node"][:22], n["status"], s, e, e - s, width, bar))
    return out
