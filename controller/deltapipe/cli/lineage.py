"""`deltapipe lineage scan|show`: table- and column-level lineage built from SQL files."""

from __future__ import annotations

import json
import sys

import click

from deltapipe.cli.app import main
from deltapipe.cli.options import dsn_option as _dsn_option


@main.group("lineage")
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
