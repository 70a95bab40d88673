"""`deltapipe demo`."""

from __future__ import annotations

import click

from deltapipe.cli.app import main
from deltapipe.cli.options import dsn_option


@main.command()
@click.option("--dir", "workdir", default=".deltapipe/demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the demo writes its pipeline directory (shop/) and report.html.")
@dsn_option
def demo(workdir, dsn):
    """The whole story on generated data: load two sources, run a pipeline of three models, change a file,
    refresh incrementally, show the changes and the reject, roll the run back, write the HTML report.

    Re-runnable: it first removes what an earlier demo left (pipeline demo, datasets demo_customers and
    demo_orders, schema demo)."""
    from deltapipe.ops.demo import run_demo
    run_demo(dsn, workdir, echo=click.echo)
