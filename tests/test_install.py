"""`deltapipe init`: idempotent, and a fresh install equals oldest-revision-then-upgrade."""

from __future__ import annotations

import psycopg
from alembic.script import ScriptDirectory

from deltapipe.install import alembic_config, install

CATALOG = """
SELECT 'routine' AS kind, p.oid::regprocedure::text AS name, pg_get_functiondef(p.oid) AS def
  FROM pg_proc p WHERE p.pronamespace = 'deltapipe'::regnamespace
UNION ALL
SELECT 'column', table_name || '.' || column_name,
       concat_ws(' ', data_type, is_nullable, column_default)
  FROM information_schema.columns WHERE table_schema IN ('deltapipe', 'deltapipe_stage')
UNION ALL
SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'deltapipe'::regnamespace
UNION ALL
SELECT 'index', indexrelid::regclass::text, pg_get_indexdef(indexrelid)
  FROM pg_index WHERE indrelid::regclass::text LIKE 'deltapipe.%'
UNION ALL
SELECT 'comment', p.oid::regprocedure::text, obj_description(p.oid, 'pg_proc')
  FROM pg_proc p WHERE p.pronamespace = 'deltapipe'::regnamespace
ORDER BY 1, 2
"""


def catalog(dsn):
    with psycopg.connect(dsn) as c:
        return c.execute(CATALOG).fetchall()


def test_init_twice_changes_nothing(dsn):
    first = catalog(dsn)
    assert any(k == "routine" and n.startswith("deltapipe.load(") for k, n, _ in first)
    install(dsn)
    install(dsn)
    assert catalog(dsn) == first


def test_every_public_routine_has_a_comment(dsn):
    for kind, name, comment in catalog(dsn):
        if kind == "comment":
            assert comment, "no COMMENT ON %s" % name


def test_fresh_install_equals_oldest_then_upgrade(dsn, postgresql):
    """The template database was installed at head. Build a second one from the oldest revision."""
    script = ScriptDirectory.from_config(alembic_config())
    base = list(script.walk_revisions())[-1].revision
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE DATABASE dp_upgrade")
    other = dsn.rsplit("/", 1)[0] + "/dp_upgrade"
    try:
        install(other, revision=base)
        install(other)
        assert catalog(other) == catalog(dsn)
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("DROP DATABASE dp_upgrade")


def test_init_replaces_a_routine_whose_return_type_changed(dsn):
    """CREATE OR REPLACE refuses a new return type; init drops the old version itself."""
    with psycopg.connect(dsn) as c:
        c.execute("DROP FUNCTION deltapipe._staging(text)")
        c.execute("CREATE FUNCTION deltapipe._staging(p_staging text) RETURNS int LANGUAGE sql AS 'SELECT 1'")
    install(dsn)
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT pg_get_function_result('deltapipe._staging(text)'::regprocedure)").fetchone()[0] == "text"
