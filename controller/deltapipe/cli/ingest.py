"""`deltapipe ingest NAME FILE`: records of an NDJSON file (or stdin) applied to a dataset."""

from __future__ import annotations

import json

import click

from deltapipe.cli.app import main
from deltapipe.cli.options import dsn_option
from deltapipe.load.ingest import ingest_file


def print_ingest(r: dict, name: str) -> None:
    click.echo("%s <- ingest  (run %s)" % (name, r["run_id"]))
    for k in ("received", "after_coalesce", "inserted", "updated", "deleted", "unchanged", "skipped"):
        click.echo("  %-15s %8d" % (k.replace("_", " "), r[k]))
    click.echo("  %-15s %8d" % ("rejected", len(r["rejected"])))
    click.echo("  %-15s %8d" % ("table rows", r["row_count"]))
    for rej in r["rejected"][:10]:
        click.echo("  reject: row %s%s: %s %s" % (rej["position"], " (%s)" % rej["column"] if rej["column"] else "",
                                                 rej["sqlstate"], rej["reason"]))
    if len(r["rejected"]) > 10:
        click.echo("  ... %d more rejects: deltapipe runs show %s" % (len(r["rejected"]) - 10, r["run_id"]))
    for p in r.get("propagated") or []:
        click.echo("  propagated to %s (run %s): %s" % (
            p["pipeline"], p["run_id"],
            ", ".join("%s %s" % (m["node"], m["strategy"] or m["status"]) for m in p["models"] or [])))


@main.command()
@click.argument("name")
@click.argument("file", type=click.Path(allow_dash=True))
@click.option("--op-key", help='Key of a row holding its op: insert, update, upsert (default) or delete '
              '(default "op").')
@click.option("--ignore-unknown-columns", is_flag=True, help="Ignore keys that are not columns (default: reject "
              "the row).")
@click.option("--lenient", is_flag=True, help="An insert of an existing key is an upsert, an update or delete of a "
              "missing key does nothing (default: rejected).")
@click.option("--propagate", is_flag=True, help="Refresh the dataset's downstream models in the same transaction.")
@click.option("--encoding", default="utf8", show_default=True, help="File encoding.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@dsn_option
def ingest(name, file, op_key, ignore_unknown_columns, lenient, propagate, encoding, as_json, dsn):
    """Apply the records of FILE (NDJSON, one object per line; - for stdin) to dataset NAME.

    Each record is a row of the dataset's columns with an optional op; the ops on one key coalesce to
    their net effect, bad records are rejected and listed, the rest is applied in one transaction."""
    options = {}
    if op_key:
        options["op_key"] = op_key
    if ignore_unknown_columns:
        options["unknown_columns"] = "ignore"
    if lenient:
        options["strict"] = False
    if propagate:
        options["propagate"] = True
    r = ingest_file(dsn, name, file, options, encoding=encoding)
    if as_json:
        click.echo(json.dumps(r, indent=2, default=str))
    else:
        print_ingest(r, name)
