"""Fault-injection benchmark: N faults over loads, each followed by an exact check.

    /work/main/.venv/bin/python benchmarks/faults.py              # 100 faults
    /work/main/.venv/bin/python benchmarks/faults.py --faults 12  # CI-sized

Faults, in rotation with random timing: SIGKILL of the controller (a real
`python -m deltapipe load` process) during COPY, during CALL deltapipe.load, or after a
random delay; pg_terminate_backend of its backend; `pg_ctl stop -m immediate` of the
server, then a restart. After each fault: every target (two datasets) equals its
before- or after-state by checksum (sum of _dp_hash = dataset.checksum, count(*) =
row_count) and by content hash; then the next load of the file must complete and land
the after-state exactly. Rows lost = rows of an expected state missing from a target.

Database: a dedicated local server in /var/tmp/deltapipe-faults/pg (created, started,
deltapipe installed), with datasets fault_a and fault_b.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from fault_helpers import (leftovers, rows_of, spawn_load, state, wait_gone, wait_phase,  # noqa: E402
                           write_version)

from deltapipe.install import install  # noqa: E402
from deltapipe.server import LocalServer  # noqa: E402

DATASETS = ("fault_a", "fault_b")
KINDS = ("kill-copy", "kill-call", "kill-random", "terminate", "pg-immediate")


def log(msg: str) -> None:
    print(msg, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faults", type=int, default=100)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--dir", default="/var/tmp/deltapipe-faults")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    base = Path(a.dir)
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    srv = LocalServer.at(base / "pg")
    dsn = srv.start()
    install(dsn)
    data = base / "data"
    data.mkdir(exist_ok=True)
    versions = 4
    files = {}
    for v in range(versions):
        p = data / ("v%d.csv" % v)
        files[v] = (p, write_version(p, v, a.rows))
    sizes = {v: len(rows_of(v, a.rows)) for v in range(versions)}

    conn = psycopg.connect(dsn, autocommit=True)
    for ds in DATASETS:
        conn.execute("SELECT deltapipe.drop_dataset(%s, true) FROM deltapipe.dataset WHERE name = %s", (ds, ds))
        conn.execute("SELECT deltapipe.create_dataset(%s, ARRAY['id'], 'id bigint, name text, n int, pad text')", (ds,))
    cur = {}
    for ds in DATASETS:
        p = spawn_load(dsn, ds, files[0][0])
        assert p.wait(300) == 0, p.communicate()
        cur[ds] = 0

    stats = dict(faults=0, recoveries=0, verified=0, lost=0, after=0, before=0, failed_checks=0)
    by_kind = {k: 0 for k in KINDS}
    t_start = time.time()
    i = -1
    while stats["faults"] < a.faults:
        i += 1
        kind = KINDS[i % len(KINDS)]
        ds = rnd.choice(DATASETS)
        nxt = (cur[ds] + 1 + rnd.randrange(versions - 1)) % versions
        before_hash = {d: files[cur[d]][1] for d in DATASETS}
        p = spawn_load(dsn, ds, files[nxt][0])
        injected = False
        if kind == "kill-random":
            time.sleep(rnd.uniform(0.05, 0.6))
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                injected = True
        else:
            phase = "copy" if kind == "kill-copy" else "call" if kind == "kill-call" else rnd.choice(["copy", "call"])
            pid = wait_phase(conn, p, phase, timeout=120)
            if pid is not None:
                if kind.startswith("kill"):
                    os.kill(p.pid, signal.SIGKILL)
                elif kind == "terminate":
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                else:
                    conn.close()
                    srv._pg_ctl("stop", "-m", "immediate", "-w")
                    dsn = srv.start()
                    conn = psycopg.connect(dsn, autocommit=True)
                injected = True
        try:
            p.communicate(timeout=300)
        except Exception:
            p.kill()
            p.communicate()
        if kind.startswith("kill") and injected:
            # let the orphaned backend see its client gone and roll back
            for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'deltapipe' "
                                    "AND pid <> pg_backend_pid()").fetchall():
                wait_gone(conn, row[0], timeout=120)
        if not injected:
            log("fault %3d %-12s missed (the load ended first), not counted" % (i + 1, kind))
            cur[ds] = nxt if p.returncode == 0 else cur[ds]
            continue
        stats["faults"] += 1
        by_kind[kind] += 1
        # every target: before- or after-state, by checksum and content
        for d in DATASETS:
            h = state(conn, d)  # asserts the checksum
            stats["verified"] += 1
            if d == ds and h == files[nxt][1]:
                stats["after"] += 1
                cur[d] = nxt
            elif h == before_hash[d]:
                stats["before"] += 1 if d == ds else 0
            else:
                stats["failed_checks"] += 1
                rows = conn.execute("SELECT count(*) FROM %s" % d).fetchone()[0]
                stats["lost"] += max(0, sizes[cur[d]] - rows)
                log("fault %3d: %s is in neither state!" % (i + 1, d))
        # recovery: the next load completes and lands the file exactly
        q = spawn_load(dsn, ds, files[nxt][0])
        out, err = q.communicate(timeout=300)
        if q.returncode == 0 and state(conn, ds) == files[nxt][1] and leftovers(conn) == (0, 0) and \
                conn.execute("SELECT count(*) FROM deltapipe.run WHERE status = 'running'").fetchone()[0] == 0:
            stats["recoveries"] += 1
            cur[ds] = nxt
        else:
            log("fault %3d: recovery failed: rc=%s %s leftovers=%s" % (i + 1, q.returncode, err.strip()[-300:],
                                                                       leftovers(conn)))
        if (i + 1) % 10 == 0:
            log("... %d faults, %d recoveries, %.0fs" % (stats["faults"], stats["recoveries"], time.time() - t_start))

    log("")
    log("faults injected               %6d   (%s)" % (stats["faults"], ", ".join("%s %d" % kv for kv in by_kind.items())))
    log("recoveries completed          %6d" % stats["recoveries"])
    log("targets verified by checksum  %6d   (faulted target left before %d, after %d)" % (
        stats["verified"], stats["before"], stats["after"]))
    log("targets in neither state      %6d" % stats["failed_checks"])
    log("rows lost                     %6d" % stats["lost"])
    log("elapsed                       %6.0fs" % (time.time() - t_start))
    ok = stats["lost"] == 0 and stats["failed_checks"] == 0 and stats["recoveries"] == stats["faults"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
