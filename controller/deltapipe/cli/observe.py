"""`deltapipe report RUN -o FILE` and `deltapipe metrics [--serve PORT]`: looking at what ran."""

from __future__ import annotations

import click

from deltapipe.cli.app import main
from deltapipe.cli.options import dsn_option


@main.command("report")
@click.argument("run_id", type=int)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@dsn_option
def report_cmd(run_id, output, dsn):
    """Write one self-contained HTML page for run RUN_ID: its DAG and a timeline of its nodes."""
    from deltapipe.ops.report import write_report
    r = write_report(dsn, run_id, output)
    click.echo("wrote %s (%d nodes, %d bytes)" % (r["file"], r["nodes"], r["bytes"]))


@main.command("metrics")
@click.option("--serve", "port", type=click.IntRange(0, 65535), help="Serve GET /metrics on this port instead of printing.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on with --serve.")
@dsn_option
def metrics_cmd(port, host, dsn):
    """Print Prometheus metrics from the catalog (rows per dataset, node durations, skips, lineage cache)."""
    from deltapipe.ops.metrics import metrics_text, serve
    if port is None:
        click.echo(metrics_text(dsn), nl=False)
        return
    serve(dsn, port, host, on_ready=lambda msg: click.echo(msg, err=True))
