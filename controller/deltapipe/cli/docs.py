"""`deltapipe docs [PIPELINE...] -o DIR | --serve PORT`: a browsable site of the project's data."""

from __future__ import annotations

import click

from deltapipe.cli.app import main
from deltapipe.cli.options import dsn_option
from deltapipe.errors import DeltapipeError


@main.command("docs")
@click.argument("pipelines", nargs=-1)
@click.option("-o", "--output", type=click.Path(), help="Directory to write the site into (index.html, runs/).")
@click.option("--serve", "port", type=click.IntRange(0, 65535), help="Serve the site from the live catalog on this port instead.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on with --serve.")
@click.option("--runs", "runs", type=click.IntRange(1, None), default=30, show_default=True,
              help="How many recent runs to list (with -o, their reports are written too).")
@dsn_option
def docs_cmd(pipelines, output, port, host, runs, dsn):
    """A browsable page of the project's data: datasets, models, columns, lineage, refreshes, audits, runs.

    One page per dataset and model (columns and types, SQL, key, how it is refreshed, audits, upstream and
    downstream tables and columns, last runs, freshness of its inputs), a search over tables and columns and the
    whole DAG. PIPELINE... limits it to those pipelines (default: all deployed). -o DIR writes a static site that
    works from file:// with no network; --serve PORT answers it from the live catalog."""
    if (output is None) == (port is None):
        raise DeltapipeError("give either -o DIR or --serve PORT", sqlstate="DP409",
                             hint="deltapipe docs -o site/  or  deltapipe docs --serve 8080")
    if output is not None:
        from deltapipe.ops.site import write_site
        r = write_site(dsn, list(pipelines) or None, output, runs)
        click.echo("wrote %s (%d tables, %d columns, %d run reports, %d bytes)"
                   % (r["index"], r["tables"], r["columns"], r["runs"], r["bytes"]))
        return
    from deltapipe.ops.site import serve
    serve(dsn, list(pipelines) or None, port, host, runs, on_ready=lambda msg: click.echo(msg, err=True))
