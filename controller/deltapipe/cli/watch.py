"""`deltapipe watch DIR`: load and refresh what changed files affect."""

from __future__ import annotations

import click

from deltapipe.cli.app import main
from deltapipe.cli.options import dsn_option


@main.command("watch")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--debounce", type=click.FloatRange(0.05, None), default=2.0, show_default=True,
              help="Seconds without any change before the gathered changes are processed.")
@click.option("--poll", type=click.FloatRange(0.01, None), metavar="SECONDS",
              help="Poll the files every SECONDS instead of using the OS's notifications (inotify), "
                   "for filesystems that send none (NFS, some bind mounts).")
@click.option("--once", is_flag=True, help="Process one window of changes, then exit.")
@click.option("--workers", "-j", type=click.IntRange(1, 64), default=1, show_default=True)
@dsn_option
def watch_cmd(directory, debounce, poll, once, workers, dsn):
    """Watch pipeline DIRECTORY: when source files or models change, load and refresh what they affect, once.

    Changed models and the models reading changed sources run with their downstream (MODEL+); a changed
    pipeline.toml runs the whole pipeline. Changes are processed when none came for --debounce seconds
    and no changed file is still growing."""
    from deltapipe.pipeline.watch import watch
    watch(dsn, directory, debounce=debounce, poll=poll, once=once, workers=workers,
          echo=lambda m: click.echo(m))
