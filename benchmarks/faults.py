"""Fault-injection benchmark: N faults over loads and pipeline runs, each followed by an exact check.

    /work/main/.venv/bin/python benchmarks/faults.py              # 100 faults, loads and runs
    /work/main/.venv/bin/python benchmarks/faults.py --faults 12  # CI-sized
    /work/main/.venv/bin/python benchmarks/faults.py --kinds run-kill-model,run-terminate

Faults, in rotation with random timing: SIGKILL of the controller (a real
`python -m deltapipe load` process) during COPY, during CALL deltapipe.load, or after a
random delay; pg_terminate_backend of its backend; `pg_ctl stop -m immediate` of the
server, then a restart. After each fault: every target (two datasets) equals its
before- or after-state by checksum (sum of _dp_hash = dataset.checksum, count(*) =
row_count) and by content hash; then the next load of the file must complete and land
the after-state exactly. Rows lost = rows of an expected state missing from a target.

Pipeline runs (kinds run-*): `python -m deltapipe run DIR --workers 2` of a pipeline made
by `deltapipe new` in the work dir with bigger, versioned data (--customers, --orders: 2
sources, 4 models: join+aggregate, aggregate of a model, aggregate, window function). Faults:
SIGKILL of the controller while a source is COPYed (run-kill-load), while a model is
refreshed (run-kill-model) or after a random delay within the run (run-kill-random);
pg_terminate_backend of a worker's backend inside deltapipe.run_node (run-terminate);
`pg_ctl stop -m immediate` during a load or a refresh, then a restart (run-pg-immediate).
The before- and after-state of every model and source of each data version are computed
first by clean runs in a separate reference database (dp_reference); a model's state is
md5(string_agg(t::text, ',' ORDER BY t::text)) over all its columns. After each fault:
every model and source equals its before- or after-state (sources also by checksum);
then recovery, `deltapipe run --resume RUN` or a plain re-run (alternating), must exit 0
and land the after-state exactly, with no run or node_run left 'running'.

Database: a dedicated local server in /var/tmp/deltapipe-faults/pg (created, started,
deltapipe installed), with datasets fault_a and fault_b and the pipeline faultpipe.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from fault_helpers import (leftovers, model_names, model_rows, pipeline_state, rows_of, spawn_load,  # noqa: E402
                           spawn_run, state, stuck, wait_deltapipe_gone, wait_gone, wait_phase, wait_run_phase,
                           write_pipeline, write_pipeline_data, write_version)

from deltapipe.install import install  # noqa: E402
from deltapipe.server import LocalServer  # noqa: E402

DATASETS = ("fault_a", "fault_b")
LOAD_KINDS = ("kill-copy", "kill-call", "kill-random", "terminate", "pg-immediate")
RUN_KINDS = ("run-kill-load", "run-kill-model", "run-kill-random", "run-terminate", "run-pg-immediate")
KINDS = LOAD_KINDS + RUN_KINDS
PIPE = "faultpipe"
SOURCES = ["faultpipe_customers", "faultpipe_orders"]


def log(msg: str) -> None:
    print(msg, flush=True)


class Ctx:
    """The server and an admin connection (both change when PostgreSQL restarts)."""

    def __init__(self, srv: LocalServer, dbname: str):
        self.srv, self.dbname = srv, dbname
        self.dsn = self.db_dsn(srv.start())
        self.conn = psycopg.connect(self.dsn, autocommit=True)

    def db_dsn(self, server_dsn: str) -> str:
        return server_dsn.rsplit("/", 1)[0] + "/" + self.dbname

    def restart_immediate(self) -> None:
        self.conn.close()
        self.srv._pg_ctl("stop", "-m", "immediate", "-w")
        self.dsn = self.db_dsn(self.srv.start())
        self.conn = psycopg.connect(self.dsn, autocommit=True)


def finish(p, timeout: float = 300):
    try:
        return p.communicate(timeout=timeout)
    except Exception:
        p.kill()
        return p.communicate()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faults", type=int, default=100)
    ap.add_argument("--rows", type=int, default=20_000, help="rows of the load datasets")
    ap.add_argument("--customers", type=int, default=10_000, help="rows of the pipeline's customers source")
    ap.add_argument("--orders", type=int, default=200_000, help="rows of the pipeline's orders source")
    ap.add_argument("--kinds", default="all",
                    help="comma-separated fault kinds, in rotation, or all, loads, runs (%s)" % ", ".join(KINDS))
    ap.add_argument("--dir", default="/var/tmp/deltapipe-faults")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    kinds: list[str] = []
    for k in [x.strip() for x in a.kinds.split(",") if x.strip()]:
        kinds += list({"all": KINDS, "loads": LOAD_KINDS, "runs": RUN_KINDS}.get(k, (k,)))
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        ap.error("unknown fault kind %s (use %s, all, loads, runs)" % (", ".join(bad) or "(none)", ", ".join(KINDS)))
    rnd = random.Random(a.seed)
    base = Path(a.dir)
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    srv = LocalServer.at(base / "pg")
    server_dsn = srv.start()
    install(server_dsn)
    dbname = server_dsn.rsplit("/", 1)[1].split("?")[0]
    ctx = Ctx(srv, dbname)
    versions = 4
    stats = dict(faults=0, recoveries=0, verified=0, lost=0, after=0, before=0, failed_checks=0, hung=0)
    by_kind = {k: dict(faults=0, recoveries=0, verified=0, lost=0, failed=0, hung=0, missed=0) for k in kinds}
    log_kind = lambda k, key, n=1: by_kind[k].__setitem__(key, by_kind[k][key] + n)  # noqa: E731

    # ---------------------------------------------------------------- loads: datasets fault_a, fault_b
    if any(k in LOAD_KINDS for k in kinds):
        data = base / "data"
        data.mkdir(exist_ok=True)
        files = {}
        for v in range(versions):
            p = data / ("v%d.csv" % v)
            files[v] = (p, write_version(p, v, a.rows))
        sizes = {v: len(rows_of(v, a.rows)) for v in range(versions)}
        for ds in DATASETS:
            ctx.conn.execute("SELECT deltapipe.drop_dataset(%s, true) FROM deltapipe.dataset WHERE name = %s", (ds, ds))
            ctx.conn.execute("SELECT deltapipe.create_dataset(%s, ARRAY['id'], 'id bigint, name text, n int, pad text')",
                             (ds,))
        cur = {}
        for ds in DATASETS:
            p = spawn_load(ctx.dsn, ds, files[0][0])
            assert p.wait(300) == 0, p.communicate()
            cur[ds] = 0

    # ---------------------------------------------------------------- runs: pipeline faultpipe
    if any(k in RUN_KINDS for k in kinds):
        root = base / PIPE
        shutil.rmtree(root, ignore_errors=True)
        write_pipeline(root, PIPE)
        models = model_names(root)
        # reference states: clean runs of each version in a database of their own
        ctx.conn.execute("DROP DATABASE IF EXISTS dp_reference WITH (FORCE)")
        ctx.conn.execute("CREATE DATABASE dp_reference")
        ref_dsn = server_dsn.rsplit("/", 1)[0] + "/dp_reference"
        install(ref_dsn)
        expect: dict[int, dict] = {}
        expect_rows: dict[int, dict] = {}
        run_secs = []
        with psycopg.connect(ref_dsn, autocommit=True) as ref:
            for v in list(range(versions)) + [0]:
                write_pipeline_data(root, v, a.customers, a.orders)
                t0 = time.time()
                p = spawn_run(ref_dsn, root, "--workers", "2")
                out, err = finish(p)
                assert p.returncode == 0, err
                run_secs.append(time.time() - t0)
                st = pipeline_state(ref, root, SOURCES)
                assert v not in expect or expect[v] == st, "version %d: the reference run is not repeatable" % v
                expect[v] = st
                expect_rows[v] = {m: model_rows(ref, m) for m in models}
            p = spawn_run(ref_dsn, root, "--workers", "2", "--full-refresh")
            finish(p)
            assert p.returncode == 0 and pipeline_state(ref, root, SOURCES) == expect[0], \
                "a full refresh changes the reference state"
        ctx.conn.execute("DROP DATABASE dp_reference WITH (FORCE)")
        # the fault database starts from version 0
        ctx.conn.execute("SELECT deltapipe.drop_dataset(name, true) FROM deltapipe.dataset WHERE name = ANY (%s)",
                         (SOURCES,))
        for m in models:
            ctx.conn.execute("DROP TABLE IF EXISTS %s" % m)
        ctx.conn.execute("DELETE FROM deltapipe.model WHERE pipeline = %s", (PIPE,))
        write_pipeline_data(root, 0, a.customers, a.orders)
        p = spawn_run(ctx.dsn, root, "--workers", "2")
        out, err = finish(p)
        assert p.returncode == 0, err
        assert pipeline_state(ctx.conn, root, SOURCES) == expect[0]
        pipe_v = 0
        run_time = sorted(run_secs)[len(run_secs) // 2]
        log("pipeline %s: %d sources, %d models, %d orders, a run takes %.1fs" % (
            PIPE, len(SOURCES), len(models), a.orders, run_time))

    def load_fault(i: int, kind: str) -> None:
        ds = rnd.choice(DATASETS)
        nxt = (cur[ds] + 1 + rnd.randrange(versions - 1)) % versions
        before_hash = {d: files[cur[d]][1] for d in DATASETS}
        p = spawn_load(ctx.dsn, ds, files[nxt][0])
        injected = False
        if kind == "kill-random":
            time.sleep(rnd.uniform(0.05, 0.6))
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                injected = True
        else:
            phase = "copy" if kind == "kill-copy" else "call" if kind == "kill-call" else rnd.choice(["copy", "call"])
            pid = wait_phase(ctx.conn, p, phase, timeout=120)
            if pid is not None:
                if kind.startswith("kill"):
                    os.kill(p.pid, signal.SIGKILL)
                elif kind == "terminate":
                    ctx.conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                else:
                    ctx.restart_immediate()
                injected = True
        finish(p)
        if kind.startswith("kill") and injected:
            wait_deltapipe_gone(ctx.conn)  # orphaned backends see their client gone and roll back
        if not injected:
            log("fault %3d %-16s missed (the load ended first), not counted" % (i + 1, kind))
            log_kind(kind, "missed")
            cur[ds] = nxt if p.returncode == 0 else cur[ds]
            return
        stats["faults"] += 1
        log_kind(kind, "faults")
        # every target: before- or after-state, by checksum and content
        for d in DATASETS:
            h = state(ctx.conn, d)  # asserts the checksum
            stats["verified"] += 1
            log_kind(kind, "verified")
            if d == ds and h == files[nxt][1]:
                stats["after"] += 1
                cur[d] = nxt
            elif h == before_hash[d]:
                stats["before"] += 1 if d == ds else 0
            else:
                stats["failed_checks"] += 1
                log_kind(kind, "failed")
                rows = ctx.conn.execute("SELECT count(*) FROM %s" % d).fetchone()[0]
                lost = max(0, sizes[cur[d]] - rows)
                stats["lost"] += lost
                log_kind(kind, "lost", lost)
                log("fault %3d: %s is in neither state!" % (i + 1, d))
        # recovery: the next load completes and lands the file exactly
        q = spawn_load(ctx.dsn, ds, files[nxt][0])
        out, err = q.communicate(timeout=300)
        if q.returncode == 0 and state(ctx.conn, ds) == files[nxt][1] and leftovers(ctx.conn) == (0, 0) and \
                stuck(ctx.conn)[0] == 0:
            stats["recoveries"] += 1
            log_kind(kind, "recoveries")
            cur[ds] = nxt
        else:
            log("fault %3d: recovery failed: rc=%s %s leftovers=%s" % (i + 1, q.returncode, err.strip()[-300:],
                                                                       leftovers(ctx.conn)))

    def run_fault(i: int, kind: str) -> None:
        nonlocal pipe_v
        nxt = (pipe_v + 1) % versions
        before, after = expect[pipe_v], expect[nxt]
        write_pipeline_data(root, nxt, a.customers, a.orders)
        last_run = ctx.conn.execute("SELECT coalesce(max(id), 0) FROM deltapipe.run").fetchone()[0]
        p = spawn_run(ctx.dsn, root, "--workers", "2")
        injected = False
        if kind == "run-kill-random":
            time.sleep(rnd.uniform(0.05, run_time))
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                injected = True
        else:
            phase = "load" if kind == "run-kill-load" else "model" if kind in ("run-kill-model", "run-terminate") \
                else rnd.choice(["load", "model"])
            pid = wait_run_phase(ctx.conn, p, phase, timeout=120)
            if pid is not None:
                if phase == "model" and kind != "run-terminate":
                    time.sleep(rnd.uniform(0, 0.05))
                if kind.startswith("run-kill"):
                    os.kill(p.pid, signal.SIGKILL)
                elif kind == "run-terminate":
                    ctx.conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                else:
                    ctx.restart_immediate()
                injected = True
        try:
            out, err = p.communicate(timeout=max(15.0, 6 * run_time))
        except subprocess.TimeoutExpired:
            # product bug: a worker whose backend is terminated mid-refresh leaves its node
            # 'running', and the other worker waits for it forever
            p.kill()
            out, err = p.communicate()
            stats["hung"] += 1
            log_kind(kind, "hung")
            log("fault %3d %-16s: the controller hung (killed after %.0fs)" % (i + 1, kind, max(15.0, 6 * run_time)))
        wait_deltapipe_gone(ctx.conn)
        if "Traceback" in err:
            log("fault %3d %-16s: the controller printed a traceback: %s" % (i + 1, kind, err.strip()[-500:]))
            log_kind(kind, "failed")
            stats["failed_checks"] += 1
        run = ctx.conn.execute("SELECT id, status FROM deltapipe.run WHERE kind = 'pipeline' AND pipeline = %s "
                               "AND id > %s ORDER BY id DESC LIMIT 1", (PIPE, last_run)).fetchone()
        if not injected:
            log("fault %3d %-16s missed (the run ended first), not counted" % (i + 1, kind))
            log_kind(kind, "missed")
            if p.returncode == 0 and pipeline_state(ctx.conn, root, SOURCES) == after:
                pipe_v = nxt
            else:
                write_pipeline_data(root, pipe_v, a.customers, a.orders)  # keep the pipeline in a known version
            return
        stats["faults"] += 1
        log_kind(kind, "faults")
        now = pipeline_state(ctx.conn, root, SOURCES)
        for t in models + SOURCES:
            stats["verified"] += 1
            log_kind(kind, "verified")
            if now[t] == after[t]:
                stats["after"] += 1
            elif now[t] == before[t]:
                stats["before"] += 1
            else:
                stats["failed_checks"] += 1
                log_kind(kind, "failed")
                if t in models:
                    have = model_rows(ctx.conn, t)
                    lost = min(len(expect_rows[pipe_v][t] - have), len(expect_rows[nxt][t] - have))
                else:
                    lost = 0
                stats["lost"] += lost
                log_kind(kind, "lost", lost)
                log("fault %3d %-16s: %s is in neither state (%d rows of the nearer state missing)!" % (
                    i + 1, kind, t, lost))
        # recovery: resume the faulted run (when it did not finish) or run again
        resume = run is not None and run[1] != "done" and rnd.random() < 0.5
        q = spawn_run(ctx.dsn, root, "--workers", "2", *(["--resume", str(run[0])] if resume else []))
        out2, err2 = finish(q)
        got = pipeline_state(ctx.conn, root, SOURCES)
        ok = q.returncode == 0 and got == after and stuck(ctx.conn) == (0, 0) and "Traceback" not in err2
        if resume and ok:
            ok = ctx.conn.execute("SELECT status FROM deltapipe.run WHERE id = %s", (run[0],)).fetchone()[0] == "done"
        if ok:
            stats["recoveries"] += 1
            log_kind(kind, "recoveries")
            pipe_v = nxt
        else:
            log("fault %3d %-16s: recovery (%s) failed: rc=%s %s; stuck runs/nodes=%s; differ: %s" % (
                i + 1, kind, "resume %s" % run[0] if resume else "re-run", q.returncode, err2.strip()[-400:],
                stuck(ctx.conn), ", ".join(t for t in got if got[t] != after[t])))
            # leave the pipeline in a known state for the next fault
            r = spawn_run(ctx.dsn, root, "--workers", "2", "--wait")
            finish(r)
            if pipeline_state(ctx.conn, root, SOURCES) == after:
                pipe_v = nxt

    t_start = time.time()
    i = -1
    while stats["faults"] < a.faults:
        i += 1
        kind = kinds[i % len(kinds)]
        (run_fault if kind in RUN_KINDS else load_fault)(i, kind)
        if (i + 1) % 10 == 0:
            log("... %d faults, %d recoveries, %.0fs" % (stats["faults"], stats["recoveries"], time.time() - t_start))

    ctx.conn.close()
    log("")
    log("faults injected               %6d   (loads %d, runs %d)" % (
        stats["faults"], sum(v["faults"] for k, v in by_kind.items() if k in LOAD_KINDS),
        sum(v["faults"] for k, v in by_kind.items() if k in RUN_KINDS)))
    log("recoveries completed          %6d" % stats["recoveries"])
    log("targets verified by checksum  %6d   (faulted targets left before %d, after %d)" % (
        stats["verified"], stats["before"], stats["after"]))
    log("targets in neither state      %6d" % stats["failed_checks"])
    log("rows lost                     %6d" % stats["lost"])
    log("controller hung (killed)      %6d" % stats["hung"])
    log("elapsed                       %6.0fs" % (time.time() - t_start))
    log("")
    log("%-18s %6s %10s %9s %6s %7s %5s %7s" % ("KIND", "FAULTS", "RECOVERED", "VERIFIED", "LOST", "FAILED", "HUNG",
                                              "MISSED"))
    for k in dict.fromkeys(kinds):
        v = by_kind[k]
        log("%-18s %6d %10d %9d %6d %7d %5d %7d" % (k, v["faults"], v["recoveries"], v["verified"], v["lost"],
                                                     v["failed"], v["hung"], v["missed"]))
    ok = stats["lost"] == 0 and stats["failed_checks"] == 0 and stats["hung"] == 0 and \
        stats["recoveries"] == stats["faults"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
