"""`deltapipe demo`."""

from __future__ import annotations


import click

from deltapipe.cli.options import dsn_option

from deltapipe.cli.app import main
from deltapipe.cli.load import print_load

@main.command()
@click.option("--dir", "workdir", default=".deltapipe/demo", show_default=True, type=click.Path(file_okay=False))
@dsn_option
def demo(workdir, dsn):
    """Load a sample file, then a changed version; show what changed and the rejects."""
    from deltapipe.ops.demo import run_demo
    run_demo(dsn, workdir, echo=click.echo, show_load=print_load)




