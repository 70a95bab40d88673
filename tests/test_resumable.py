"""Resumable large loads: committed chunks in a ledger, --resume after a killed controller."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from test_cli import one_error_line


def big(write, n=200000, bad_line=None):
    rows = []
    for i in range(1, n + 1):
        rows.append("%d,name %d,%s\n" % (i, i, "oops" if i + 1 == bad_line else "%d.5" % i))
    return write("big.csv", "id,name,amount\n" + "".join(rows))


def test_chunked_load_records_a_ledger(cli, conn, write):
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric")
    f = big(write, 25000, bad_line=24000)
    r = cli("load", "t", f, "--commit-every", "10000")
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 24999
    assert conn.execute("SELECT line_no FROM deltapipe.reject").fetchall() == [(24000,)]
    ledger = conn.execute("SELECT byte_offset, byte_length, first_line, rows, state FROM deltapipe.batch "
                          "ORDER BY byte_offset").fetchall()
    assert [(x[2], x[3], x[4]) for x in ledger] == [(1, 10000, "published"), (10001, 10000, "published"),
                                                   (20001, 5001, "published")]
    assert ledger[0][0] == 0 and ledger[1][0] == ledger[0][1] and sum(x[1] for x in ledger) == os.path.getsize(f)
    assert conn.execute("SELECT count(*) FROM deltapipe.staging").fetchone()[0] == 0


def test_resume_after_the_controller_is_killed(cli, conn, dsn, write):
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric")
    f = big(write, 300000, bad_line=299000)
    env = dict(os.environ, DELTAPIPE_DSN=dsn)
    p = subprocess.Popen([sys.executable, "-m", "deltapipe", "load", "t", str(f), "--commit-every", "20000"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        if conn.execute("SELECT count(*) FROM deltapipe.batch").fetchone()[0] >= 3:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    staged = conn.execute("SELECT count(*), max(byte_offset + byte_length) FROM deltapipe.batch").fetchone()
    assert 3 <= staged[0] < 15, "the load finished before it could be killed"
    assert conn.execute("SELECT to_regclass('public.t')").fetchone()[0] is None  # nothing published
    # the part already staged is not read again; rejects keep their real line numbers
    r = cli("load", "t", f, "--resume")
    assert r.exit_code == 0, r.output
    assert "resuming run" in r.output and "after %d committed chunk" % staged[0] in r.output
    assert conn.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM t").fetchone() == (
        299999, 299999, 1, 300000)
    assert conn.execute("SELECT line_no FROM deltapipe.reject").fetchall() == [(299000,)]
    assert conn.execute("SELECT count(*) FROM deltapipe.run").fetchone()[0] == 1
    assert conn.execute("SELECT status FROM deltapipe.run").fetchone()[0] == "done"
    assert "nothing to resume" in one_error_line(cli("load", "t", f, "--resume"))


def test_resume_when_the_staged_part_was_lost(cli, conn, dsn, write):
    cli("dataset", "create", "t", "--key", "id", "--columns", "id bigint, name text, amount numeric")
    f = big(write, 30000)
    # a chunked load that stopped after staging (simulated: publish fails on a lock timeout)
    conn.execute("CREATE TABLE public.t (id bigint)")  # make the first load fail at apply...
    r = cli("load", "t", f, "--commit-every", "10000")
    assert r.exit_code == 1
    conn.execute("DROP TABLE public.t")
    stg = conn.execute("SELECT args->>'staging' FROM deltapipe.run").fetchone()[0]
    conn.execute("TRUNCATE %s" % stg)  # as after a crash: unlogged tables come back empty
    r = cli("load", "t", f, "--resume")
    assert r.exit_code == 0, r.output
    assert "staging again from the start" in r.output
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 30000
