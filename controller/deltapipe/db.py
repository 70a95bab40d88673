"""Connections: --dsn, else DELTAPIPE_DSN, else the project's local server."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from deltapipe.errors import DeltapipeError, from_db


def resolve_dsn(dsn: str | None) -> str:
    if dsn:
        return dsn
    env = os.environ.get("DELTAPIPE_DSN")
    if env:
        return env
    from deltapipe.server import find_local_server
    local = find_local_server()
    if local is not None:
        if not local.is_running():
            raise DeltapipeError("the local server at %s is not running" % local.data_dir,
                                 hint="run `deltapipe server start`")
        return local.dsn()
    raise DeltapipeError("no database given",
                         hint="pass --dsn, set DELTAPIPE_DSN, or run `deltapipe server start` for a local server")


if TYPE_CHECKING:
    import psycopg


def connect(dsn: str | None, *, autocommit: bool = False, application_name: str = "deltapipe") -> psycopg.Connection:
    import psycopg  # here, not at the top: `deltapipe load` of an unchanged file does without it
    real = resolve_dsn(dsn)
    try:
        return psycopg.connect(real, autocommit=autocommit, application_name=application_name)
    except psycopg.OperationalError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "connection failed"
        raise DeltapipeError("cannot connect to PostgreSQL: %s" % first,
                             hint="check --dsn / DELTAPIPE_DSN, or run `deltapipe server start`") from e


def is_installed(conn: psycopg.Connection) -> bool:
    return conn.execute("select to_regclass('deltapipe.dataset') is not null").fetchone()[0]


def require_installed(conn: psycopg.Connection) -> None:
    if not is_installed(conn):
        raise DeltapipeError("deltapipe is not installed in this database", hint="run `deltapipe init`")


__all__ = ["connect", "resolve_dsn", "from_db", "require_installed", "is_installed"]
