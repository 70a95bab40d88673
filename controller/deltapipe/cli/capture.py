"""`deltapipe track TABLE`, `untrack TABLE`, `tracked`, `serve PIPELINE --every 1s`: change capture
from application tables, and models kept caught up."""

from __future__ import annotations

import click

from deltapipe.cli.app import main
from deltapipe.cli.options import dsn_option


@main.command("track")
@click.argument("table")
@click.option("--key", help="Key columns, comma-separated (default: the primary key).")
@dsn_option
def track_cmd(table, key, dsn):
    """Track TABLE (schema.table): its INSERTs, UPDATEs and DELETEs are logged, so models reading it
    refresh incrementally. Deploy the pipelines reading it again afterwards."""
    from deltapipe.load.capture import track
    r = track(dsn, table, [k.strip() for k in key.split(",") if k.strip()] if key else None)
    click.echo("tracking %s (key %s)" % (r["table"], ", ".join(r["key"])))


@main.command("untrack")
@click.argument("table")
@dsn_option
def untrack_cmd(table, dsn):
    """Stop tracking TABLE: its triggers, trigger function and change log are dropped."""
    from deltapipe.load.capture import untrack
    r = untrack(dsn, table)
    click.echo("untracked %s" % r["name"])


@main.command("tracked")
@click.option("--all", "show_all", is_flag=True, help="Also list the datasets' tables (always tracked).")
@dsn_option
def tracked_cmd(show_all, dsn):
    """List the tracked tables: key, TRUNCATEs and column changes seen (epoch), changes logged."""
    from deltapipe.load.capture import tracked
    rows = tracked(dsn, show_all)
    if not rows:
        click.echo("no tracked tables (deltapipe track TABLE)")
        return
    click.echo("%-32s %-20s %6s %10s  %s" % ("table", "key", "epoch", "changes", "dataset"))
    for r in rows:
        click.echo("%-32s %-20s %6d %10d  %s" % (r["table"], ",".join(r["key"]), r["epoch"], r["changes"],
                                                  r["dataset"] or ""))


@main.command("serve")
@click.argument("pipeline")
@click.option("--every", default="1s", show_default=True, help="Round interval: 500ms, 1s, 1m ...")
@click.option("--for", "duration", help="Stop after this long (default: until Ctrl-C).")
@dsn_option
def serve_cmd(pipeline, every, duration, dsn):
    """Keep PIPELINE's models caught up: every interval, run the models whose inputs changed
    (deltapipe.run_continuously), committing between rounds. Ctrl-C stops cleanly."""
    from deltapipe.pipeline.serve import parse_interval, serve
    ev = parse_interval(every)
    dur = parse_interval(duration) if duration else None
    click.echo("serving %s every %s (Ctrl-C stops)" % (pipeline, every), err=True)
    r = serve(dsn, pipeline, ev, dur, on_notice=lambda m: click.echo(m, err=True))
    click.echo("%s after %ss" % ("stopped" if r["stopped"] else "done", r["seconds"]), err=True)
