"""The `deltapipe` group: expected errors become one line and exit status 1."""

from __future__ import annotations

import sys

import click

from deltapipe import __version__
from deltapipe.errors import DeltapipeError, from_db


class Cli(click.Group):
    """Expected errors become one line on stderr and exit status 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DeltapipeError as e:
            click.echo("error: %s" % e.one_line(), err=True)
            sys.exit(1)
        except Exception as e:
            psycopg = sys.modules.get("psycopg")  # imported by the commands that use it, not here
            if psycopg is None or not isinstance(e, psycopg.Error):
                raise
            click.echo("error: %s" % from_db(e).one_line(), err=True)
            sys.exit(1)




def quiet_psycopg_log() -> None:
    """psycopg logs "error ignored terminating Copy" at WARNING when a connection drops during
    COPY; the loader reports (or retries) that error itself, so keep it off the terminal. Called
    before a command that may use psycopg runs (logging is not imported for the others)."""
    import logging
    logging.getLogger("psycopg").setLevel(logging.ERROR)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deltapipe")
def main():
    """deltapipe: load files into PostgreSQL and keep SQL models up to date, writing only what changed.

    \b
    Start here:
      deltapipe server start            # a local PostgreSQL in .deltapipe/pg (or pass --dsn)
      deltapipe init                    # install the catalog and the SQL API
      deltapipe dataset create people --key id --from people.csv
      deltapipe load people people.csv  # again later: only the changes are written
      deltapipe runs                    # what ran, with counts and timings
    """


