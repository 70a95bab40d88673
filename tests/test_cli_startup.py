"""`deltapipe load` of an unchanged file: known by its recorded stat, skipped without reading it and
without psycopg; a command imports only what it needs (the console script, in a fresh interpreter)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from deltapipe import pgwire

SCRIPT = r"""
import json, sys
sys.argv = ["deltapipe"] + json.loads(sys.argv[1])
from deltapipe.cli import entry
code = 0
try:
    entry()
except SystemExit as e:
    code = e.code or 0
heavy = sorted(m for m in ("psycopg", "sqlglot", "alembic", "sqlalchemy", "pyarrow", "zstandard", "deltapipe.pipeline")
               if m in sys.modules)
print("IMPORTED " + json.dumps({"code": code, "heavy": heavy}))
"""


def deltapipe(dsn, *args):
    """Run the console script's entry in a fresh interpreter; (output, exit code, heavy modules imported)."""
    env = {k: v for k, v in os.environ.items() if k != "DELTAPIPE_DSN"}
    env["DELTAPIPE_DSN"] = dsn
    p = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps([str(a) for a in args])], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    out, _, tail = p.stdout.rpartition("IMPORTED ")
    info = json.loads(tail)
    return out, info["code"], info["heavy"]


def settled(write, name, text):
    """A file last changed more than a second ago (a fresher one's stat is not trusted)."""
    path = write(name, text)
    time.sleep(1.1)
    return path


def runs(conn, ds):
    return conn.execute("SELECT r.status, n.status, n.file_sha256, n.source_file, n.mode, n.bytes, "
                        "coalesce(jsonb_typeof(r.args->'file_stat') = 'object', false) "
                        "FROM deltapipe.run r JOIN deltapipe.node_run n ON n.run_id = r.id "
                        "WHERE n.node = %s ORDER BY r.id", (ds,)).fetchall()


def test_an_unchanged_file_is_skipped_by_its_stat_without_psycopg(dsn, conn, write):
    conn.execute("SELECT deltapipe.create_dataset('t', ARRAY['id'], 'id bigint, name text')")
    path = settled(write, "t.csv", "id,name\n1,a\n2,b\n")
    out, code, heavy = deltapipe(dsn, "load", "t", path)
    assert code == 0 and "inserted" in out, out
    assert "sqlglot" not in heavy and "alembic" not in heavy and "pyarrow" not in heavy and "deltapipe.pipeline" not in heavy
    out, code, heavy = deltapipe(dsn, "load", "t", path)
    assert code == 0 and "skipped, file unchanged since the last load (same SHA-256)" in out, out
    assert heavy == []  # not even psycopg
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    # recorded as the ordinary path records a skip
    assert runs(conn, "t") == [("done", "done", sha, str(path), "snapshot", 16, True),
                               ("skipped", "skipped", sha, str(path), "snapshot", 16, True)]
    # the same size and mtime, other bytes: the ctime moved, so the file is read again
    st = path.stat()
    path.write_text("id,name\n1,a\n2,c\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    out, code, heavy = deltapipe(dsn, "load", "t", path)
    assert code == 0 and "updated              1" in out, out
    assert conn.execute("SELECT name FROM t WHERE id = 2").fetchone()[0] == "c"


def test_a_file_changed_just_before_its_load_is_hashed_next_time(dsn, conn, write):
    conn.execute("SELECT deltapipe.create_dataset('t', ARRAY['id'], 'id bigint')")
    path = write("fresh.csv", "id\n1\n")
    # changed "now" for the whole test (its mtime ahead of the clock): its stat is never recorded
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 3600 * 10 ** 9))
    out, code, _ = deltapipe(dsn, "load", "t", path)
    assert code == 0, out
    out, code, heavy = deltapipe(dsn, "load", "t", path)
    assert code == 0 and "skipped" in out and "psycopg" in heavy  # the SHA-256 decided it, the long way
    assert [r[-1] for r in runs(conn, "t")] == [False, False]
    # settled: the next load hashes it (its ctime moved) and records its stat; the one after trusts it
    os.utime(path, ns=(time.time_ns(), time.time_ns() - 3600 * 10 ** 9))
    time.sleep(1.1)
    out, code, heavy = deltapipe(dsn, "load", "t", path)
    assert code == 0 and "skipped" in out and "psycopg" in heavy
    assert [r[-1] for r in runs(conn, "t")] == [False, False, True]
    out, code, heavy = deltapipe(dsn, "load", "t", path)
    assert code == 0 and "skipped" in out and heavy == []


def test_the_quick_path_steps_aside_for_anything_it_cannot_answer(dsn, conn, write):
    conn.execute("SELECT deltapipe.create_dataset('t', ARRAY['id'], 'id bigint')")
    path = settled(write, "t.csv", "id\n1\n")
    out, code, _ = deltapipe(dsn, "load", "nope", path)
    assert code == 1 and out.strip() == ("error: unknown dataset nope; hint: create it with `deltapipe dataset "
                                         "create`; list them with `deltapipe dataset list`"), out
    assert deltapipe(dsn, "load", "t", path)[1] == 0
    out, code, heavy = deltapipe(dsn, "load", "t", path, "--force")
    assert code == 0 and "unchanged            1" in out and "psycopg" in heavy
    out, code, heavy = deltapipe(dsn, "load", "t", path, "--json")
    assert code == 0 and json.loads(out)["status"] == "skipped"
    out, code, heavy = deltapipe(dsn, "load", "t", path, "--max-rejects", "x")  # checked by the ordinary path
    assert code == 1 and "invalid reject limit" in out
    # a connection it would not open as libpq does: psycopg's path
    out, code, heavy = deltapipe(dsn + ("&" if "?" in dsn else "?") + "sslmode=disable&keepalives=1", "load", "t", path)
    assert code == 0 and "skipped" in out and "psycopg" in heavy


def test_light_commands_register_from_their_module_alone():
    from deltapipe.cli import LIGHT, main
    code = ("from deltapipe.cli.app import main; import importlib, json, sys; "
            "[importlib.import_module('deltapipe.cli.' + m) for m in set(json.loads(sys.argv[1]).values())]; "
            "print(json.dumps(sorted(main.commands)))")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(LIGHT)], stdout=subprocess.PIPE, text=True, check=True)
    alone = set(json.loads(p.stdout))
    assert set(LIGHT) <= alone
    for name in LIGHT:  # the same command as in the full group
        assert main.commands[name].callback.__module__ == "deltapipe.cli." + LIGHT[name]


def test_pgwire_dsn_forms_and_refusals():
    assert pgwire.parse_dsn("postgresql://u:p%40ss@h:5433/db?sslmode=disable") == {
        "user": "u", "password": "p@ss", "host": "h", "port": "5433", "dbname": "db", "sslmode": "disable"}
    assert pgwire.parse_dsn("host=/tmp port=5432 user='a b' password='it\\'s' dbname=x") == {
        "host": "/tmp", "port": "5432", "user": "a b", "password": "it's", "dbname": "x"}
    assert pgwire.parse_dsn("postgresql://[::1]:6000/d") == {"host": "::1", "port": "6000", "dbname": "d"}
    for dsn in ("postgresql://h1,h2/db", "postgresql://h/db?sslmode=require", "postgresql://h/db?service=x",
                "host=h sslmode=verify-full"):
        assert pgwire.connect(dsn) is None, dsn
    assert pgwire.literal("it's") == "'it''s'" and pgwire.literal(None) == "NULL"
    with pytest.raises(pgwire.Unsupported):
        pgwire.literal("a\0b")


def test_pgwire_scram_sha_256_against_rfc_7677():
    s = pgwire._Scram("pencil")
    s.nonce, s.bare = "rOprNGfwEbeRWgbNEkqO", "n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = s.final(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert final == (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    s.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    with pytest.raises(pgwire.Unsupported):
        s.verify(b"v=AAAA")


def test_pgwire_queries_and_errors(dsn):
    c = pgwire.connect(dsn)
    assert c is not None
    try:
        assert c.query("SELECT 1, NULL::text, 'é'") == [["1", None, "é"]]
        with pytest.raises(pgwire.ServerError) as e:
            c.query("SELECT 1/0")
        assert e.value.sqlstate == "22012"
        assert c.query("SELECT %s" % pgwire.literal("a'b")) == [["a'b"]]  # the session goes on
    finally:
        c.close()
