"""Roles: a reader cannot write, a writer loads but cannot change the catalog's structure."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner

from deltapipe.cli import main


def login(conn, name, role):
    conn.execute("""DO $$ BEGIN CREATE ROLE %s LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$""" % name)
    conn.execute("GRANT %s TO %s" % (role, name))


def as_user(dsn, user):
    return dsn.replace("postgresql://postgres@", "postgresql://%s@" % user)


def test_reader_writer_admin(conn, dsn, write):
    login(conn, "dp_test_reader", "deltapipe_reader")
    login(conn, "dp_test_writer", "deltapipe_writer")
    conn.execute("SELECT deltapipe.create_dataset('t', ARRAY['id'], 'id bigint, name text')")
    writer, reader = as_user(dsn, "dp_test_writer"), as_user(dsn, "dp_test_reader")

    # the writer loads (first load creates the table, a second one merges)
    run = CliRunner().invoke(main, ["load", "t", str(write("a.csv", "id,name\n1,a\n2,b\n")), "--dsn", writer])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(main, ["load", "t", str(write("b.csv", "id,name\n1,a\n2,c\n")), "--dsn", writer])
    assert run.exit_code == 0, run.output
    with psycopg.connect(writer, autocommit=True) as w:
        for stmt in ("ALTER TABLE deltapipe.dataset ADD COLUMN x int",
                     "DROP TABLE deltapipe.reject",
                     "SELECT deltapipe.create_dataset('u', ARRAY['id'], 'id bigint')",
                     "CALL deltapipe.rollback(1)",
                     "DELETE FROM deltapipe.run"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                w.execute(stmt)

    # the reader reads the catalog and the table, and cannot write
    with psycopg.connect(reader, autocommit=True) as r:
        assert r.execute("SELECT name FROM t ORDER BY id").fetchall() == [("a",), ("c",)]
        assert r.execute("SELECT count(*) FROM deltapipe.run").fetchone()[0] >= 2
        for stmt in ("INSERT INTO t (id, name, _dp_hash) VALUES (9, 'x', 0)",
                     "UPDATE deltapipe.dataset SET row_count = 0",
                     "SELECT deltapipe.stage('t')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                r.execute(stmt)
    run = CliRunner().invoke(main, ["load", "t", str(write("c.csv", "id,name\n3,z\n")), "--dsn", reader])
    assert run.exit_code == 1 and "permission denied" in run.output and "Traceback" not in run.output
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2


def test_no_security_definer_routine_without_search_path(conn):
    bad = conn.execute("""SELECT p.oid::regprocedure::text FROM pg_proc p
                          WHERE p.pronamespace = 'deltapipe'::regnamespace AND p.prosecdef
                            AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')""").fetchall()
    assert bad == []
