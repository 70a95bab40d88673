"""`deltapipe server start|stop|status` and `deltapipe init`."""

from __future__ import annotations

import sys

import click

from deltapipe.cli.options import dsn_option
from deltapipe.server import LocalServer

from deltapipe.cli.app import main

# ---------------------------------------------------------------- server
@main.group()
def server():
    """Run a local PostgreSQL cluster for deltapipe (default .deltapipe/pg)."""


_data_dir = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                         help="Cluster directory (default .deltapipe/pg).")


@server.command("start")
@_data_dir
def server_start(data_dir):
    """Create (first time) and start the local cluster; print its DSN."""
    click.echo(LocalServer.at(data_dir).start())


@server.command("stop")
@_data_dir
def server_stop(data_dir):
    """Stop the local cluster."""
    click.echo("stopped" if LocalServer.at(data_dir).stop() else "not running")


@server.command("status")
@_data_dir
def server_status(data_dir):
    """Say whether the local cluster runs, and its DSN."""
    st = LocalServer.at(data_dir).status()
    click.echo("running  %s" % st["dsn"] if st["running"] else "stopped  (%s)" % st["data_dir"])
    if not st["running"]:
        sys.exit(3)


# ---------------------------------------------------------------- init
@main.command()
@dsn_option
def init(dsn):
    """Install or upgrade the catalog and every SQL routine (idempotent)."""
    from deltapipe.install import install
    r = install(dsn)
    click.echo("deltapipe catalog at revision %s, %d routines applied" % (r["revision"], r["routines"]))


# ---------------------------------------------------------------- datasets
