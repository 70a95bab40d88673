"""`deltapipe init`: alembic upgrade of the catalog, then every routine in sql/, in one transaction."""

from __future__ import annotations

import re

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from deltapipe.db import resolve_dsn
from deltapipe.errors import DeltapipeError, from_db
from deltapipe.resources import manifest, migrations_dir

LOCK_KEY = 0x64656C7461  # advisory lock serializing concurrent installs


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


_ROUTINE = re.compile(r"CREATE\s+OR\s+REPLACE\s+(?:FUNCTION|PROCEDURE)\s+deltapipe\.(\w+)\s*\(", re.I)


def _apply_routine(raw: psycopg.Connection, path) -> None:
    """CREATE OR REPLACE one routine file. When a new version changes the return
    type or parameter names (which CREATE OR REPLACE refuses), drop the old
    version of that routine first - inside the same install transaction."""
    text = path.read_text()
    try:
        with raw.transaction():
            raw.execute(text)
    except psycopg.errors.InvalidFunctionDefinition:
        m = _ROUTINE.search(text)
        if not m:
            raise
        for (sig,) in raw.execute("SELECT p.oid::regprocedure::text FROM pg_proc p "
                                  "WHERE p.pronamespace = 'deltapipe'::regnamespace AND p.proname = %s",
                                  (m.group(1),)).fetchall():
            raw.execute("DROP ROUTINE %s" % sig)
        raw.execute(text)


def install(dsn: str | None, *, revision: str = "head", routines: bool = True) -> dict:
    """Upgrade the catalog to ``revision`` and (re)apply every routine. Idempotent."""
    real = resolve_dsn(dsn)
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(real), poolclass=NullPool)
    applied = []
    roles = None
    try:
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            raw.execute("CREATE SCHEMA IF NOT EXISTS deltapipe")
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            if routines:
                for path in manifest():
                    _apply_routine(raw, path)
                    applied.append(path.name)
                # roles last, so that they cover every table and routine
                roles = raw.execute("SELECT deltapipe._setup_roles()").fetchone()[0]
            rev = raw.execute("SELECT version_num FROM deltapipe.alembic_version").fetchone()[0]
    except psycopg.Error as e:
        raise from_db(e) from e
    except DeltapipeError:
        raise
    finally:
        engine.dispose()
    return {"revision": rev, "routines": len(applied), "roles": roles}
