"""CLI commands: lineage scan/show, report, metrics, watch, load-json. Registered on the main group."""

from __future__ import annotations

import json
import sys

import click

from deltapipe.cli.options import dsn_option as _dsn_option




# ---------------------------------------------------------------- lineage
@click.group("lineage")
def lineage_grp():
    """Table- and column-level lineage built from SQL files."""


@lineage_grp.command("scan")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--clear-cache", is_flag=True, help="Forget every cached parse result first (parse every file again).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_dsn_option
def lineage_scan(directory, clear_cache, as_json, dsn):
    """Parse every .sql file under DIRECTORY and store its lineage graph in the database.

    Files whose content (SHA-256) was parsed before by the same parser version come from
    the parse cache. A file that does not parse is reported (file:line) and the scan goes on."""
    from deltapipe.lineage.graph import scan
    r = scan(dsn, directory, clear_cache=clear_cache)
    if as_json:
        click.echo(json.dumps(r))
    else:
        if clear_cache:
            click.echo("parse cache cleared (%d entries)" % r["cleared"])
        click.echo("scanned %d files under %s: %d parsed, %d cache hits, %d cache misses, %d failed"
                   % (r["files"], r["root"], r["parsed"], r["cache_hits"], r["cache_misses"], len(r["failed"])))
        click.echo("graph: %d edges added, %d removed" % (r["edges_added"], r["edges_removed"]))
        for f in r["failed"]:
            click.echo("  failed %s:%s: %s" % (f["file"], f["line"] if f["line"] else "?", f["message"]))
    if r["failed"]:
        sys.exit(2)


@lineage_grp.command("show")
@click.argument("name")
@click.option("--upstream", "direction", flag_value="upstream", default=True, help="What NAME derives from (default).")
@click.option("--downstream", "direction", flag_value="downstream", help="What derives from NAME.")
@click.option("--depth", type=click.IntRange(1, None), help="At most this many hops (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@_dsn_option
def lineage_show(name, direction, depth, as_json, dsn):
    """Upstream or downstream lineage of TABLE or TABLE.COLUMN (names as [schema.]table[.column])."""
    from deltapipe.lineage.graph import show
    r = show(dsn, name, direction, depth)
    if as_json:
        click.echo(json.dumps(r))
        return
    start = r["start"]
    click.echo("%s %s %s%s" % (direction, start["kind"], start["name"], " (depth <= %d)" % depth if depth else ""))
    if not r["rows"]:
        click.echo("  (nothing %s)" % direction)
    for row in r["rows"]:
        arrow = "<-" if direction == "upstream" else "->"
        click.echo("  %s%s %s %s   (via %s, %s)" % ("  " * (row["depth"] - 1), arrow, row["kind"], row["name"],
                                                  row["via"], row["file"]))


# ---------------------------------------------------------------- report
@click.command("report")
@click.argument("run_id", type=int)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@_dsn_option
def report_cmd(run_id, output, dsn):
    """Write one self-contained HTML page for run RUN_ID: its DAG and a timeline of its nodes."""
    from deltapipe.ops.report import write_report
    r = write_report(dsn, run_id, output)
    click.echo("wrote %s (%d nodes, %d bytes)" % (r["file"], r["nodes"], r["bytes"]))


# ---------------------------------------------------------------- metrics
@click.command("metrics")
@click.option("--serve", "port", type=click.IntRange(0, 65535), help="Serve GET /metrics on this port instead of printing.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on with --serve.")
@_dsn_option
def metrics_cmd(port, host, dsn):
    """Print Prometheus metrics from the catalog (rows per dataset, node durations, skips, lineage cache)."""
    from deltapipe.ops.metrics import metrics_text, serve
    if port is None:
        click.echo(metrics_text(dsn), nl=False)
        return
    serve(dsn, port, host, on_ready=lambda msg: click.echo(msg, err=True))


# ---------------------------------------------------------------- watch
@click.command("watch")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--debounce", type=click.FloatRange(0.05, None), default=2.0, show_default=True,
              help="Seconds without any change before the gathered changes are processed.")
@click.option("--poll", type=click.FloatRange(0.01, None), metavar="SECONDS",
              help="Poll the files every SECONDS instead of using the OS's notifications (inotify), "
                   "for filesystems that send none (NFS, some bind mounts).")
@click.option("--once", is_flag=True, help="Process one window of changes, then exit.")
@click.option("--workers", "-j", type=click.IntRange(1, 64), default=1, show_default=True)
@_dsn_option
def watch_cmd(directory, debounce, poll, once, workers, dsn):
    """Watch pipeline DIRECTORY: when source files or models change, load and refresh what they affect, once.

    Changed models and the models reading changed sources run with their downstream (MODEL+); a changed
    pipeline.toml runs the whole pipeline. Changes are processed when none came for --debounce seconds
    and no changed file is still growing."""
    from deltapipe.pipeline.watch import watch
    watch(dsn, directory, debounce=debounce, poll=poll, once=once, workers=workers,
          echo=lambda m: click.echo(m))


# ---------------------------------------------------------------- load-json
@click.command("load-json")
@click.argument("file", type=click.Path())
@click.option("--array", "arrays", multiple=True, required=True, metavar="PATH=DATASET",
              help="Load the array at JSON PATH (e.g. nodes, graph.edges) into DATASET. Repeatable.")
@click.option("--mode", type=click.Choice(["snapshot", "upsert", "append", "changes"]), help="Default: the dataset's.")
@click.option("--force", is_flag=True, help="Load even if the document is the one loaded last time.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@_dsn_option
def load_json_cmd(file, arrays, mode, force, as_json, dsn):
    """Stream arrays of a large JSON document into datasets (never reading it whole), e.g.
    `deltapipe load-json graph.json --array nodes=nodes --array edges=edges`."""
    from deltapipe.load.jsonload import load_json, parse_arrays
    rs = load_json(dsn, file, parse_arrays(list(arrays)), mode=mode, force=force)
    if as_json:
        click.echo(json.dumps(rs, default=str))
        return
    for r in rs:
        if r["status"] == "skipped":
            click.echo("%s: skipped, %s (run %s)" % (r["node"], r["skip_reason"], r["run_id"]))
            continue
        click.echo("%s <- %s  (run %s): read %d  +%d ~%d -%d =%d  rejected %d" % (
            r["node"], r["source_file"], r["run_id"], r["rows_in"], r["inserted"], r["updated"], r["deleted"],
            r["unchanged"], r["rejected"]))


def register(main) -> None:
    """Add the lineage, report, metrics, watch and load-json commands to the `deltapipe` group."""
    main.add_command(lineage_grp)
    for name in ("report_cmd", "metrics_cmd", "watch_cmd", "load_json_cmd"):
        cmd = globals().get(name)
        if cmd is not None:
            main.add_command(cmd)
