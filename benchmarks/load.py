"""Load benchmark: deltapipe load times as RATIOS to a raw COPY measured in the same run.

    /work/main/.venv/bin/python benchmarks/load.py                 # 1M rows + RSS at 1M and 3M
    /work/main/.venv/bin/python benchmarks/load.py --rows 100000   # quick run (RSS at 100k and 300k)
    /work/main/.venv/bin/python benchmarks/load.py --no-rss        # skip the subprocess RSS runs
    /work/main/.venv/bin/python benchmarks/load.py --rounds 1      # one round instead of 3
    /work/main/.venv/bin/python benchmarks/load.py --dsn postgresql://user@host/db
    /work/main/.venv/bin/python benchmarks/load.py --stock --only cli   # the issue's case: a stock server

The machine is shared and noisy, so absolute times mean little: every figure is
printed as a ratio to the reference, a plain COPY of v1.csv into an UNLOGGED
table of 8 text columns streamed from psycopg in 1 MB blocks (median of 3),
measured in the same round. Everything is measured --rounds times (default 3)
and the summary shows the median of each ratio over the rounds.

Data: benchmarks/gendata.py writes v1.csv (N rows, 8 columns), v2.csv (1% of
rows updated, 0.5% deleted, 0.5% new) and bad.csv (v1 with 1,000 malformed
rows). Files are cached in --data-dir/<rows> (default /var/tmp/deltapipe-bench)
and reused when a previous complete generation with the same row count exists.

Measured, each as wall time of deltapipe.loader.load_file(..., progress=False):
  initial   initial load of v1 into a fresh dataset         target <= 4.0 x ref
  snapshot  snapshot load of v2 (1% changed)                target <= 2.5 x ref
  unchanged v2 again (skipped: same SHA-256)                target <= 0.3 x ref
  forced    v2 again with force=True (a full re-diff)       no target, for information
  bad       initial load of bad.csv into a second dataset   target <= 1.3 x initial,
            and it must report rejected == 1000
  history   snapshot load of v2 into a history-mode dataset  ratio to the plain snapshot of the
            (after its initial load of v1): the same change,  same round, no target
            also written as versions (closed + opened);
            and that initial load (the rows written twice)    ratio to the plain initial load, no target
  rss       controller peak RSS of an initial load of v1, in a fresh subprocess
            each, at --rows and 3 x --rows                  target < 150 MB, flat

Through the command line, end to end (the `deltapipe` console script in a subprocess: interpreter
and CLI start-up included, as a user runs it), each against the same round's reference:
  cli initial    `deltapipe load` of v1 into a fresh dataset        target <= 3.0 x ref
  cli snapshot   `deltapipe load` of v2 (1% changed)                target <= 2.0 x ref
  cli unchanged  `deltapipe load` of v2 again (skipped)             target <= 0.2 x ref

Other inputs of the same rows (v1.parquet and v1.csv.zst, converted from v1.csv once and cached),
each an initial load in a fresh subprocess (time of load_file, and the controller's peak RSS):
  parquet   v1.parquet (row groups of 131072 rows)           ratio to ref, RSS target < 200 MB
  zst       v1.csv.zst (zstd level 3)                         ratio to ref, RSS flat

Database: --dsn, else $DELTAPIPE_DSN, else a dedicated local server in
/var/tmp/deltapipe-bench/pg (started if needed; deltapipe is (re)installed into
it). With an external DSN deltapipe is installed only if it is missing. --stock
starts instead a server of its own in /var/tmp/deltapipe-bench/stock/pg whose
postgresql.conf is initdb's with only shared_buffers = 1GB and max_wal_size = 4GB set
(plus port and listen address): a user's server, not the tuned embedded one; whatever
the engine needs beyond that it must set per session or per statement. With a local
server (not --dsn) the CPU seconds of the reference and of the CLI loads are measured
too (server processes and client). --only cli measures only the reference and the CLI
loads (initial, snapshot, unchanged). The benchmark creates and drops the datasets
bench_clean, bench_bad, bench_cli, bench_hist and bench_rss and the table
public.deltapipe_bench_ref.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gendata  # noqa: E402

from deltapipe.load.loader import LoadOptions, load_file  # noqa: E402

REF_TABLE = "public.deltapipe_bench_ref"
COPY_BLOCK = 1 << 20
DS_CLEAN, DS_BAD, DS_RSS, DS_CLI, DS_HIST = "bench_clean", "bench_bad", "bench_rss", "bench_cli", "bench_hist"
META = "meta.json"


def log(msg: str = "") -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- data files

def other_inputs(d: Path) -> tuple[Path, Path]:
    """v1.parquet and v1.csv.zst of d/v1.csv (made once; a partial file is never reused)."""
    pq_path, zst_path = d / "v1.parquet", d / "v1.csv.zst"
    if not pq_path.exists():
        import pyarrow as pa
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq
        types = {"id": pa.int64(), "name": pa.string(), "city": pa.string(), "amount": pa.decimal128(12, 2),
                 "created_at": pa.timestamp("s"), "active": pa.bool_(), "qty": pa.int32(), "note": pa.string()}
        reader = pcsv.open_csv(d / "v1.csv", read_options=pcsv.ReadOptions(block_size=16 << 20),
                               parse_options=pcsv.ParseOptions(newlines_in_values=True),
                               convert_options=pcsv.ConvertOptions(column_types=types))
        tmp = pq_path.with_suffix(".tmp")
        with pq.ParquetWriter(tmp, reader.schema) as w:
            for batch in reader:
                w.write_batch(batch, row_group_size=131072)
        tmp.rename(pq_path)
    if not zst_path.exists():
        import zstandard
        tmp = zst_path.with_suffix(".tmp")
        with open(d / "v1.csv", "rb") as fi, open(tmp, "wb") as fo:
            zstandard.ZstdCompressor(level=3).copy_stream(fi, fo)
        tmp.rename(zst_path)
    return pq_path, zst_path


def data_files(base: Path, rows: int) -> tuple[Path, dict]:
    """Directory holding v1/v2/bad.csv for ``rows`` rows (generated once, then reused)."""
    out = base / str(rows)
    meta_path = out / META
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("rows") == rows and all((out / f).exists() for f in ("v1.csv", "v2.csv", "bad.csv")):
            return out, meta
    except (OSError, ValueError):
        pass
    print("generating %d rows into %s ..." % (rows, out), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    meta_path.unlink(missing_ok=True)
    counts = gendata.generate(out, rows)
    meta = {"rows": rows, **counts}
    meta_path.write_text(json.dumps(meta))  # written last: a partial generation is never reused
    print("generated in %.1fs" % (time.perf_counter() - t0), file=sys.stderr, flush=True)
    return out, meta


# ---------------------------------------------------------------- database

STOCK_CONF = """
# --- written by deltapipe server ---
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
shared_buffers = '1GB'
max_wal_size = '4GB'
"""


def stock_server(data_dir: Path):
    """A local server configured as the issue's stock PostgreSQL: only shared_buffers and max_wal_size set."""
    from deltapipe import server

    class StockServer(server.LocalServer):
        def _configure(self, port: int) -> None:
            conf = self.real_dir / "postgresql.conf"
            text = conf.read_text().split(STOCK_CONF.strip().splitlines()[0])[0] + STOCK_CONF.format(port=port)
            tmp = self.real_dir / "postgresql.conf.tmp"
            tmp.write_text(text)
            user = server._run_user()
            if user:
                shutil.chown(tmp, user)
            tmp.replace(conf)
    return StockServer.at(data_dir)


PGDATA: Path | None = None  # of the local server the benchmark started (for its CPU time)
TCK = os.sysconf("SC_CLK_TCK")


def cpu_now() -> float | None:
    """CPU seconds used so far by the local server (the postmaster, its live processes and the ones
    that exited: backends and parallel workers) plus this process and its children (the CLI); None
    with --dsn. It moves much less than wall time when other jobs load the machine."""
    if PGDATA is None:
        return None
    pm = int((PGDATA / "postmaster.pid").read_text().split()[0])
    ticks = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(p) == pm:
            ticks += sum(int(x) for x in st[11:15])  # utime stime cutime cstime
        elif int(st[1]) == pm:
            ticks += int(st[11]) + int(st[12])
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return ticks / TCK + me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def cpu_since(c0: float | None) -> float | None:
    return None if c0 is None else cpu_now() - c0


def get_dsn(args) -> tuple[str, str]:
    global PGDATA
    from deltapipe.install import install

    if args.stock:
        srv = stock_server(args.data_dir / "stock" / "pg")
        dsn = srv.start()
        install(dsn)
        PGDATA = srv.real_dir
        return dsn, "stock server %s" % srv.data_dir
    dsn = args.dsn or os.environ.get("DELTAPIPE_DSN")
    if dsn:
        with psycopg.connect(dsn) as c:
            ok = c.execute("select to_regclass('deltapipe.dataset') is not null").fetchone()[0]
        if not ok:
            install(dsn)
        return dsn, "--dsn" if args.dsn else "$DELTAPIPE_DSN"
    from deltapipe.server import LocalServer
    srv = LocalServer.at(args.data_dir / "pg")
    dsn = srv.start()
    install(dsn)
    PGDATA = srv.real_dir
    return dsn, "local server %s" % (args.data_dir / "pg")


def checkpoint(dsn: str) -> None:
    """Flush dirty buffers before a measurement so one step does not pay for the previous one's writes."""
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("CHECKPOINT")
    except psycopg.Error:
        pass  # not superuser: measure without it


def fresh_dataset(dsn: str, name: str, mode: str = "snapshot") -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        if c.execute("SELECT 1 FROM deltapipe.dataset WHERE name = %s", (name,)).fetchone():
            c.execute("SELECT deltapipe.drop_dataset(%s, true)", (name,))
        c.execute("SELECT deltapipe.create_dataset(%s, ARRAY['id'], %s, NULL, %s)", (name, gendata.COLUMNS, mode))


def drop_dataset(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        if c.execute("SELECT 1 FROM deltapipe.dataset WHERE name = %s", (name,)).fetchone():
            c.execute("SELECT deltapipe.drop_dataset(%s, true)", (name,))


# ---------------------------------------------------------------- measurements

def reference_copy(dsn: str, path: Path) -> tuple[float, int, float | None]:
    """Raw COPY of ``path`` into a fresh UNLOGGED all-text table; returns seconds (COPY only), rows, and
    CPU seconds (server and client, see cpu_now)."""
    cols = ", ".join("c%d text" % i for i in range(1, 9))
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS %s" % REF_TABLE)
        c.execute("CREATE UNLOGGED TABLE %s (%s)" % (REF_TABLE, cols))
        checkpoint(dsn)
        with c.cursor() as cur:
            c0 = cpu_now()
            t0 = time.perf_counter()
            with cur.copy("COPY %s FROM STDIN (FORMAT csv, HEADER true)" % REF_TABLE) as cp, open(path, "rb") as f:
                while block := f.read(COPY_BLOCK):
                    cp.write(block)
            secs, cpu = time.perf_counter() - t0, cpu_since(c0)
        n = c.execute("SELECT count(*) FROM %s" % REF_TABLE).fetchone()[0]
        c.execute("DROP TABLE %s" % REF_TABLE)
    return secs, n, cpu


def timed_load(dsn: str, dataset: str, path: Path, **opts) -> tuple[float, dict]:
    checkpoint(dsn)
    t0 = time.perf_counter()
    r = load_file(dsn, dataset, path, LoadOptions(**opts), progress=False)
    return time.perf_counter() - t0, r


# VmHWM (peak resident set of this address space), not ru_maxrss: on Linux the latter
# keeps the parent's peak across fork + exec, so it would measure the benchmark itself.
CHILD = r"""
import json, sys, time
from deltapipe.load.loader import load_file, LoadOptions
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
base = hwm()
t0 = time.perf_counter()
r = load_file(sys.argv[1], sys.argv[2], sys.argv[3], LoadOptions(), progress=False)
secs = time.perf_counter() - t0
peak = hwm()
print(json.dumps({"base_kb": base, "peak_kb": peak, "secs": secs, "status": r["status"],
                  "inserted": r["inserted"], "rejected": r["rejected"]}))
"""


DELTAPIPE = Path(sys.executable).parent / "deltapipe"


def cli_load(dsn: str, dataset: str, path: Path) -> tuple[float, str, float | None]:
    """`deltapipe load DATASET PATH` as a user runs it, in a subprocess; (wall seconds, its output,
    CPU seconds of the server and the CLI or None, see cpu_now).

    PYTHONDONTWRITEBYTECODE is dropped from its environment: an installed deltapipe has its
    bytecode compiled (pip does it), so the start-up measured is the one users see."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["DELTAPIPE_DSN"] = dsn
    checkpoint(dsn)
    c0 = cpu_now()
    t0 = time.perf_counter()
    p = subprocess.run([str(DELTAPIPE), "load", dataset, str(path)], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    secs, cpu = time.perf_counter() - t0, cpu_since(c0)
    if p.returncode != 0:
        raise RuntimeError("deltapipe load failed (exit %d):\n%s" % (p.returncode, p.stdout.strip()))
    return secs, p.stdout, cpu


def cli_round(dsn: str, v1: Path, v2: Path, ref: float, ref_cpu: float | None, rows: int, meta: dict,
              problems: list) -> dict:
    """`deltapipe load` of v1 (initial), v2 (snapshot) and v2 again (unchanged) into a fresh dataset.
    With a local server, also the CPU seconds of each (server and CLI) as a ratio to the reference's."""
    fresh_dataset(dsn, DS_CLI)
    subprocess.run([str(DELTAPIPE), "--version"], stdout=subprocess.DEVNULL,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})  # bytecode cache
    cpu = {}
    c_init, out, cpu["init"] = cli_load(dsn, DS_CLI, v1)
    c_snap, out2, cpu["snap"] = cli_load(dsn, DS_CLI, v2)
    c_same, out3, cpu["same"] = cli_load(dsn, DS_CLI, v2)
    log("%-10s %7.2fs  %5.2fx ref   snapshot %.2fs  %5.2fx ref   unchanged %.2fs  %5.2fx ref"
        % ("cli", c_init, c_init / ref, c_snap, c_snap / ref, c_same, c_same / ref))
    res = {"cli_init": c_init, "cli_snap": c_snap, "cli_same": c_same}
    if ref_cpu:
        log("%-10s CPU %.2fs %5.2fx ref   snapshot %.2fs  %5.2fx ref   unchanged %.2fs  %5.2fx ref"
            % ("", cpu["init"], cpu["init"] / ref_cpu, cpu["snap"], cpu["snap"] / ref_cpu, cpu["same"],
               cpu["same"] / ref_cpu))
        res.update({"cpu_" + k: v / ref_cpu for k, v in cpu.items()})
    for label, o in (("initial", out), ("snapshot", out2)):
        t = [ln.strip() for ln in o.splitlines() if ln.strip().startswith("time")]
        log("%-10s %-9s %s" % ("", label, t[0] if t else "-"))
    if "inserted    %10d" % rows not in out or "updated     %10d" % meta["updated"] not in out2 \
            or "skipped" not in out3:
        problems.append("cli: unexpected output:\n%s\n%s\n%s" % (out, out2, out3))
    return res


def rss_run(dsn: str, path: Path) -> dict:
    """Initial load of ``path`` into a fresh dataset, in its own fresh interpreter; its peak RSS."""
    fresh_dataset(dsn, DS_RSS)
    checkpoint(dsn)
    p = subprocess.run([sys.executable, "-c", CHILD, dsn, DS_RSS, str(path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    drop_dataset(dsn, DS_RSS)
    if p.returncode != 0:
        raise RuntimeError("RSS child failed (exit %d):\n%s" % (p.returncode, p.stderr.strip()))
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report

COUNTS = ("inserted", "updated", "deleted", "unchanged", "rejected")
PHASES = ("copy", "validate", "diff", "apply")


def describe(label: str, secs: float, ref: float, r: dict) -> None:
    counts = "  ".join("%s=%s" % (k, r.get(k)) for k in COUNTS)
    ph = r.get("phases") or {}
    phases = "  ".join("%s=%.0f" % (k, float(ph[k])) for k in PHASES if k in ph) or "-"
    log("%-10s %7.2fs  %5.2fx ref  status=%s" % (label, secs, secs / ref, r.get("status")))
    log("%-10s counts: %s  rows=%s" % ("", counts, r.get("row_count")))
    log("%-10s phases ms: %s" % ("", phases))


def mismatch(r: dict, **expect) -> list[str]:
    return ["%s=%s (expected %s)" % (k, r.get(k), v) for k, v in expect.items() if r.get(k) != v]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in v1.csv (default 1000000)")
    ap.add_argument("--dsn", help="database (default $DELTAPIPE_DSN, else a dedicated local server)")
    ap.add_argument("--data-dir", type=Path, default=Path("/var/tmp/deltapipe-bench"),
                    help="cache of generated files and home of the local server (default %(default)s)")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak RSS runs (and the 3x file)")
    ap.add_argument("--stock", action="store_true",
                    help="run against a server of its own with a stock postgresql.conf (shared_buffers 1GB, "
                         "max_wal_size 4GB, nothing else), in DATA_DIR/stock/pg")
    ap.add_argument("--only", choices=("all", "cli"), default="all",
                    help="cli: only the reference COPY and the CLI loads (default all)")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark datasets afterwards")
    ap.add_argument("--rounds", type=int, default=3,
                    help="measure everything this many times; the table shows medians (default 3)")
    args = ap.parse_args()

    log("$ " + shlex.join([sys.executable, *sys.argv]))
    rows = args.rows
    d1, meta = data_files(args.data_dir, rows)
    v1, v2, bad = d1 / "v1.csv", d1 / "v2.csv", d1 / "bad.csv"
    dsn, where = get_dsn(args)
    with psycopg.connect(dsn) as c:
        pgver = c.execute("SHOW server_version").fetchone()[0]
    log("rows=%d  v1.csv=%.1f MB  v2: %d updated, %d deleted, %d new  bad.csv: %d bad rows"
        % (rows, v1.stat().st_size / 1e6, meta["updated"], meta["deleted"], meta["new"], meta["bad"]))
    log("PostgreSQL %s (%s), %d CPUs, %s" % (pgver, where, os.cpu_count(), time.strftime("%Y-%m-%d %H:%M")))
    log()
    problems: list[str] = []

    n_v2 = rows - meta["deleted"] + meta["new"]
    rounds = []
    for k in range(1, args.rounds + 1):
        log("--- round %d of %d" % (k, args.rounds))
        # the reference, measured in this round: raw COPY (median of 3)
        refs, cpus = [], []
        for i in range(3):
            secs, n, cpu = reference_copy(dsn, v1)
            if n != rows:
                problems.append("reference COPY loaded %d rows, expected %d" % (n, rows))
            refs.append(secs)
            cpus.append(cpu)
        ref = statistics.median(refs)
        ref_cpu = None if None in cpus else statistics.median(cpus)
        log("reference COPY (median of 3): %.2fs   runs: %s%s" % (ref, "  ".join("%.2f" % s for s in refs),
                                                                 "" if ref_cpu is None else "   CPU %.2fs" % ref_cpu))

        if args.only == "cli":
            rounds.append({"ref": ref, **cli_round(dsn, v1, v2, ref, ref_cpu, rows, meta, problems)})
            log()
            continue

        # 1. initial load
        fresh_dataset(dsn, DS_CLEAN)
        t_init, r = timed_load(dsn, DS_CLEAN, v1)
        describe("initial", t_init, ref, r)
        problems += ["initial: " + m for m in mismatch(r, status="done", inserted=rows, rejected=0, row_count=rows)]

        # 2. snapshot of v2
        t_snap, r = timed_load(dsn, DS_CLEAN, v2)
        describe("snapshot", t_snap, ref, r)
        problems += ["snapshot: " + m for m in mismatch(
            r, status="done", inserted=meta["new"], updated=meta["updated"], deleted=meta["deleted"],
            unchanged=rows - meta["updated"] - meta["deleted"], rejected=0, row_count=n_v2)]

        # 3. v2 again: skipped by SHA-256, then forced
        t_same, r = timed_load(dsn, DS_CLEAN, v2)
        describe("unchanged", t_same, ref, r)
        problems += ["unchanged: " + m for m in mismatch(r, status="skipped")]
        t_force, r = timed_load(dsn, DS_CLEAN, v2, force=True)
        describe("forced", t_force, ref, r)
        problems += ["forced: " + m for m in mismatch(
            r, status="done", inserted=0, updated=0, deleted=0, unchanged=n_v2, rejected=0, row_count=n_v2)]

        # 4. bad rows
        fresh_dataset(dsn, DS_BAD)
        t_bad, r = timed_load(dsn, DS_BAD, bad)
        describe("bad", t_bad, ref, r)
        log("%-10s %.2fx clean initial load" % ("", t_bad / t_init))
        problems += ["bad: " + m for m in mismatch(
            r, status="done", rejected=meta["bad"], inserted=rows - meta["bad"], row_count=rows - meta["bad"])]

        # 5. the same through the command line, end to end
        cli = cli_round(dsn, v1, v2, ref, ref_cpu, rows, meta, problems)

        # 6. Parquet and zstd inputs of the same rows: initial loads in fresh interpreters
        other = {}
        for label, path in zip(("parquet", "zst"), other_inputs(d1)):
            res = rss_run(dsn, path)
            other[label] = res
            log("%-10s %7.2fs  %5.2fx ref  peak RSS %.0f MB  status=%s inserted=%s"
                % (label, res["secs"], res["secs"] / ref, res["peak_kb"] / 1024, res["status"], res["inserted"]))
            if res["status"] != "done" or res["inserted"] != rows:
                problems.append("%s: status=%s inserted=%s (expected done, %d)"
                                % (label, res["status"], res["inserted"], rows))

        # 7. history mode: the same 1% change, also written as versions
        fresh_dataset(dsn, DS_HIST, "history")
        t_hist_init, r = timed_load(dsn, DS_HIST, v1)
        describe("hist init", t_hist_init, ref, r)
        log("%-10s %.2fx the plain initial load" % ("", t_hist_init / t_init))
        t_hist, r = timed_load(dsn, DS_HIST, v2)
        describe("history", t_hist, ref, r)
        log("%-10s %.2fx the plain snapshot" % ("", t_hist / t_snap))
        problems += ["history: " + m for m in mismatch(
            r, status="done", inserted=meta["new"], updated=meta["updated"], deleted=meta["deleted"],
            unchanged=rows - meta["updated"] - meta["deleted"], rejected=0, row_count=n_v2)]
        with psycopg.connect(dsn) as c:
            nv, ncur = c.execute("SELECT count(*), count(*) FILTER (WHERE valid_to IS NULL) FROM %s_history"
                                 % DS_HIST).fetchone()
        if (nv, ncur) != (rows + meta["new"] + meta["updated"], n_v2):
            problems.append("history: %d versions, %d current (expected %d, %d)"
                            % (nv, ncur, rows + meta["new"] + meta["updated"], n_v2))
        drop_dataset(dsn, DS_HIST)

        # noise check: the reference once more, after the loads
        ref_after, _, _ = reference_copy(dsn, v1)
        log("reference COPY again after the loads: %.2fs (%.2fx the median; shows the round's noise)"
            % (ref_after, ref_after / ref))
        log()
        rounds.append({"ref": ref, "init": t_init, "snap": t_snap, "same": t_same, "force": t_force, "bad": t_bad,
                       **cli,
                       "parquet": other["parquet"]["secs"], "zst": other["zst"]["secs"],
                       "parquet_rss": other["parquet"]["peak_kb"] / 1024, "zst_rss": other["zst"]["peak_kb"] / 1024,
                       "hist": t_hist, "hist_init": t_hist_init})

    def med(key: str, per: str | None = "ref") -> tuple[float, float]:
        """(median seconds, median ratio to ``per`` of the same round) over the rounds."""
        secs = statistics.median(r[key] for r in rounds)
        return secs, statistics.median(r[key] / r[per] for r in rounds) if per else 1.0

    # controller peak RSS
    rss = []
    if not args.no_rss and args.only != "cli":
        log()
        for n in (rows, 3 * rows):
            d, _ = data_files(args.data_dir, n)
            res = rss_run(dsn, d / "v1.csv")
            rss.append((n, res))
            log("rss %-7s peak %.0f MB (after imports %.0f MB), load %.1fs, status=%s inserted=%s"
                % (fmt_rows(n), res["peak_kb"] / 1024, res["base_kb"] / 1024, res["secs"], res["status"],
                   res["inserted"]))
            if res["status"] != "done" or res["inserted"] != n:
                problems.append("rss %s: status=%s inserted=%s (expected done, %d)"
                                % (fmt_rows(n), res["status"], res["inserted"], n))

    if not args.keep:
        for name in (DS_CLEAN, DS_BAD, DS_CLI):
            drop_dataset(dsn, name)

    # summary table: medians over the rounds of each round's ratio
    ref = statistics.median(r["ref"] for r in rounds)
    cli_only = args.only == "cli"
    table = [("reference COPY", ref, 1.0, "", None)]
    if not cli_only:
        table += main_rows(med)
    (c_init, qc_init), (c_snap, qc_snap), (c_same, qc_same) = med("cli_init"), med("cli_snap"), med("cli_same")
    table += [("CLI initial load v1", c_init, qc_init, "<= 3.0x ref", qc_init <= 3.0),
              ("CLI snapshot v2 (1%)", c_snap, qc_snap, "<= 2.0x ref", qc_snap <= 2.0),
              ("CLI unchanged v2", c_same, qc_same, "<= 0.2x ref", qc_same <= 0.2)]
    if all("cpu_init" in r for r in rounds):
        table += [("CLI %s, CPU time" % k, None, statistics.median(r["cpu_" + k] for r in rounds), "(information)", None)
                  for k in ("init", "snap", "same")]
    if not cli_only:
        table += other_rows(med)

    log("medians over %d round(s); each ratio is to the reference COPY of its own round" % len(rounds))
    log()
    log("%-22s %8s %7s  %-16s %s" % ("name", "seconds", "ratio", "target", "result"))
    log("-" * 64)
    for name, secs, ratio, target, ok in table:
        log("%-22s %8s %7.2f  %-16s %s" % (name, "-" if secs is None else "%.2f" % secs, ratio, target,
                                           "" if ok is None else "PASS" if ok else "MISS"))
    for label in ("parquet", "zst") if not cli_only else ():
        mb = max(r[label + "_rss"] for r in rounds)
        log("%-22s %8s %7s  %-16s %s" % ("peak RSS %s %s" % (label, fmt_rows(rows)), "%.0f MB" % mb, "", "< 200 MB",
                                         "PASS" if mb < 200 else "MISS"))
    peaks = [res["peak_kb"] / 1024 for _, res in rss]
    for (n, res), mb in zip(rss, peaks):
        ok = mb < 150
        log("%-22s %8s %7s  %-16s %s" % ("peak RSS %s rows" % fmt_rows(n), "%.0f MB" % mb, "", "< 150 MB",
                                         "PASS" if ok else "MISS"))
    if len(peaks) == 2:
        growth = peaks[1] / peaks[0]
        log("%-22s %8s %7.2f  %-16s %s" % ("RSS growth 3x rows", "", growth, "flat (<= 1.1)",
                                           "PASS" if growth <= 1.1 else "MISS"))
    log()
    if problems:
        log("CHECKS FAILED:")
        for p in problems:
            log("  " + p)
    else:
        log("all count checks passed" + ("" if cli_only else " (rejected == %d on bad.csv)" % meta["bad"]))
    return 1 if problems else 0


def main_rows(med) -> list:
    """Summary rows of the in-process loads."""
    (t_init, q_init), (t_snap, q_snap), (t_same, q_same) = med("init"), med("snap"), med("same")
    (t_force, q_force), (t_bad, q_bad), (_, q_bad_init) = med("force"), med("bad"), med("bad", "init")
    return [("initial load v1", t_init, q_init, "<= 4.0x ref", q_init <= 4.0),
            ("snapshot v2 (1%)", t_snap, q_snap, "<= 2.5x ref", q_snap <= 2.5),
            ("unchanged v2 (skip)", t_same, q_same, "<= 0.3x ref", q_same <= 0.3),
            ("v2 forced re-diff", t_force, q_force, "-", None),
            ("bad rows (vs ref)", t_bad, q_bad, "-", None),
            ("bad rows (vs initial)", t_bad, q_bad_init, "<= 1.3x initial", q_bad_init <= 1.3)]


def other_rows(med) -> list:
    """Summary rows of the other inputs and of history mode."""
    (t_pq, q_pq), (t_zst, q_zst) = med("parquet"), med("zst")
    (t_hist, q_hist), (t_hist_init, q_hist_init) = med("hist", "snap"), med("hist_init", "init")
    return [("parquet initial load", t_pq, q_pq, "-", None),
            ("zst initial load", t_zst, q_zst, "-", None),
            ("history v2 (vs snap)", t_hist, q_hist, "-", None),
            ("history v1 (vs init)", t_hist_init, q_hist_init, "-", None)]


def fmt_rows(n: int) -> str:
    return "%gM" % (n / 1e6) if n >= 1_000_000 else "%gk" % (n / 1e3)


if __name__ == "__main__":
    sys.exit(main())
