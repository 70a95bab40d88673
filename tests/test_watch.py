"""`deltapipe watch DIR`: a burst of writes to one file produces one load and one run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from pipeline_helpers import make_pipeline

MODELS = {"by_customer": "-- key: customer\nSELECT customer, sum(amount) AS total FROM orders GROUP BY customer",
          "daily": "-- key: day\nSELECT day, count(*) AS n FROM orders GROUP BY day"}


def start_watch(dsn, d, *args):
    env = dict(os.environ, DELTAPIPE_DSN=dsn, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "deltapipe", "watch", str(d), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = proc.stdout.readline()
    assert first.startswith("watching "), first + (proc.stdout.read() if proc.poll() is not None else "")
    return proc


def counts(conn):
    return conn.execute("SELECT count(*) FILTER (WHERE kind = 'pipeline'), count(*) FILTER (WHERE kind = 'load' "
                        "AND status = 'done') FROM deltapipe.run").fetchone()


@pytest.mark.parametrize("how", [[], ["--poll", "0.1"]], ids=["notify", "poll"])
def test_burst_of_writes_gives_one_load(cli, conn, dsn, tmp_path, how):
    d = make_pipeline(tmp_path / "p", MODELS)
    assert cli("run", d).exit_code == 0
    runs0, loads0 = counts(conn)
    proc = start_watch(dsn, d, "--once", "--debounce", "1", *how)
    try:
        f = d / "data/orders.csv"
        rows = ["id,customer,amount,day"] + ["%d,c%d,%d,2024-01-0%d" % (i, i % 3, i, 1 + i % 5) for i in range(1, 41)]
        # a slow writer: the file grows in 8 pieces, 0.3 s apart (each shorter than the debounce window)
        with open(f, "w") as fh:
            for k in range(8):
                fh.write("\n".join(rows[k * 5:(k + 1) * 5 + (1 if k == 7 else 0)]) + "\n")
                fh.flush()
                time.sleep(0.3)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "changed: data/orders.csv (" in out and "events)" in out, out
    assert len(re.findall(r"^run \d+ (?:done|failed):", out, re.M)) == 1, out
    runs1, loads1 = counts(conn)
    assert (runs1 - runs0, loads1 - loads0) == (1, 1), out  # one run, one load
    # the whole file was loaded, never a half-written one
    assert conn.execute("SELECT count(*) FROM public.orders").fetchone()[0] == 40
    assert conn.execute("SELECT sum(total) FROM public.by_customer").fetchone()[0] == sum(range(1, 41))
    assert conn.execute("SELECT count(*) FROM deltapipe.reject").fetchone()[0] == 0


def test_model_change_runs_only_that_model_and_ctrl_c_stops(cli, conn, dsn, tmp_path):
    d = make_pipeline(tmp_path / "p", MODELS)
    assert cli("run", d).exit_code == 0
    proc = start_watch(dsn, d, "--debounce", "0.5")
    try:
        (d / "models/daily.sql").write_text("-- key: day\nSELECT day, count(*) AS n, sum(amount) AS amt FROM orders GROUP BY day")
        deadline = time.time() + 30
        lines = []
        while time.time() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if re.match(r"run \d+ (done|failed):", line):
                break
        assert any(l.startswith("running --select daily+") for l in lines), lines
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped watching" in rest and "Traceback" not in rest, rest
    rid = conn.execute("SELECT max(id) FROM deltapipe.run WHERE kind = 'pipeline'").fetchone()[0]
    nodes = set(r[0] for r in conn.execute("SELECT node FROM deltapipe.node_run WHERE run_id = %s", (rid,)))
    assert "daily" in nodes and "by_customer" not in nodes
    assert conn.execute("SELECT sum(amt) FROM public.daily").fetchone()[0] == 22


def test_watch_refuses_a_non_pipeline(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    r = cli("watch", tmp_path / "empty", "--once")
    assert r.exit_code == 1 and r.output.startswith("error: ") and "no pipeline.toml" in r.output


def test_new_file_matching_a_source_glob_is_loaded_other_files_ignored(cli, conn, dsn, tmp_path):
    src = ('[[sources]]\ndataset = "orders"\nfile = "data/orders_*.csv"\nkey = "id"\nmode = "upsert"\n'
           'columns = "id bigint, customer text, amount numeric, day date"\n')
    d = make_pipeline(tmp_path / "p", MODELS, sources=src,
                      data={"data/orders_1.csv": "id,customer,amount,day\n1,ann,10,2024-01-01\n"})
    assert cli("run", d).exit_code == 0
    proc = start_watch(dsn, d, "--once", "--debounce", "0.5")
    try:
        (d / "data/notes.txt").write_text("not a source\n")
        (d / "data/orders_2.csv").write_text("id,customer,amount,day\n2,bob,5,2024-01-02\n")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "changed: data/orders_2.csv (" in out and "notes.txt" not in out, out
    assert "running --select by_customer+ daily+" in out, out
    assert conn.execute("SELECT count(*) FROM public.orders").fetchone()[0] == 2


def test_pipeline_toml_change_runs_the_whole_pipeline(cli, dsn, tmp_path):
    d = make_pipeline(tmp_path / "p", MODELS)
    assert cli("run", d).exit_code == 0
    proc = start_watch(dsn, d, "--once", "--debounce", "0.5")
    try:
        toml = d / "pipeline.toml"
        toml.write_text(toml.read_text() + "# a comment\n")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "changed: pipeline.toml (" in out and "running the whole pipeline" in out, out
