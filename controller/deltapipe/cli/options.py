"""Options shared by every command module of the CLI."""

from __future__ import annotations

import functools

import click


def dsn_option(f):
    """--dsn, else DELTAPIPE_DSN, else the project's local server."""
    @click.option("--dsn", envvar="DELTAPIPE_DSN", show_envvar=True,
                  help="PostgreSQL connection string; default: DELTAPIPE_DSN, else the local server.")
    @functools.wraps(f)
    def wrapper(*a, **kw):
        return f(*a, **kw)
    return wrapper
