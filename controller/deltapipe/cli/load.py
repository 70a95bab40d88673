"""`deltapipe load` (one file into a dataset) and `deltapipe load-json` (arrays of a large JSON document)."""

from __future__ import annotations

import json

import click

from deltapipe.cli.app import main, quiet_psycopg_log
from deltapipe.cli.options import dsn_option
from deltapipe.load.files import FORMATS, MODES


def print_load(r: dict) -> None:
    if r["status"] == "skipped":
        click.echo("%s: skipped, %s (run %s; --force to load anyway)" % (r["node"], r["skip_reason"], r["run_id"]))
        return
    click.echo("%s <- %s  (run %s, %s mode, %s)" % (r["node"], r["source_file"], r["run_id"], r["mode"], r["strategy"]))
    click.echo("  rows read   %10d" % r["rows_in"])
    for k in ("inserted", "updated", "deleted", "unchanged", "rejected", "duplicates"):
        click.echo("  %-11s %10d" % (k, r[k]))
    click.echo("  table rows  %10d" % (r.get("row_count") or 0))
    if r.get("valid_at"):
        click.echo("  versions    opened %d, closed %d, at %s" % (r["inserted"] + r["updated"], r["updated"] + r["deleted"],
                                                                 r["valid_at"]))
    ph = r.get("phases") or {}
    total = sum(float(v) for v in ph.values())
    click.echo("  time        " + "  ".join("%s %.2fs" % (k, float(ph[k]) / 1000) for k in
                                          ("copy", "validate", "diff", "apply") if k in ph)
               + "  (total %.2fs)" % (total / 1000))
    if r["rejected"]:
        click.echo("  rejects: deltapipe runs show %s" % r["run_id"])


@main.command()
@click.argument("name")
@click.argument("file", type=click.Path())
@click.option("--mode", type=click.Choice(MODES), help="snapshot: the file is the whole truth (missing rows are "
              "deleted); upsert: insert or update; append: insert new keys only; changes: rows carry an op column; "
              "history: a snapshot that keeps every version of each row (valid_from/valid_to).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: by file extension, else csv.")
@click.option("--delimiter", help="Field delimiter (default , for csv, tab for tsv).")
@click.option("--quote", help='Quote character (default " for csv, none for tsv).')
@click.option("--null", "null", help="Text that means NULL (default: empty field).")
@click.option("--encoding", default="utf8", show_default=True, help="File encoding, e.g. latin1.")
@click.option("--no-header", is_flag=True, help="The file has no header line; fields are in dataset column order.")
@click.option("--op-column", help="changes mode: column holding insert/update/delete (default op).")
@click.option("--order-column", help="changes mode: column ordering several ops on one key (default: line order).")
@click.option("--strategy", type=click.Choice(["auto", "merge", "swap"]), help="How to publish (default auto).")
@click.option("--force", is_flag=True, help="Load even if the file is identical to the last one loaded.")
@click.option("--allow-empty", is_flag=True, help="snapshot mode: allow a file with no rows to empty the table.")
@click.option("--max-rejects", help="Publish nothing if more rows than this are rejected: N rows or P%.")
@click.option("--on-schema-change", type=click.Choice(["fail", "add-columns"]), default="fail", show_default=True,
              help="A header with columns the dataset lacks: stop with one line, or add them (types inferred).")
@click.option("--commit-every", type=int, metavar="N",
              help="Stage the file in committed chunks of N lines (resumable with --resume); publish stays atomic.")
@click.option("--resume", is_flag=True, help="Continue an interrupted --commit-every load of this same file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@dsn_option
def load(name, file, mode, fmt, delimiter, quote, null, encoding, no_header, op_column, order_column, strategy,
         force, allow_empty, max_rejects, on_schema_change, commit_every, resume, as_json, dsn):
    """Load FILE into dataset NAME, writing only what changed."""
    if not (force or resume or as_json or commit_every or max_rejects is not None):
        # a file known unchanged (same stat as when its SHA-256 was recorded) is skipped without psycopg
        from deltapipe.load.unchanged import skip_if_unchanged
        r = skip_if_unchanged(dsn, name, file, mode=mode, fmt=fmt,
                              text_options=(delimiter, quote, null, no_header or None, encoding != "utf8" or None))
        if r is not None:
            print_load(r)
            return
    quiet_psycopg_log()
    from deltapipe.load.loader import LoadOptions, load_file
    opts = LoadOptions(mode=mode, format=fmt, delimiter=delimiter, quote=quote, null=null, encoding=encoding,
                       header=not no_header, op_column=op_column, order_column=order_column, strategy=strategy,
                       force=force, allow_empty=allow_empty, max_rejects=max_rejects,
                       on_schema_change=on_schema_change, commit_every=commit_every, resume=resume)
    r = load_file(dsn, name, file, opts)
    if as_json:
        click.echo(json.dumps(r, default=str))
    else:
        print_load(r)


@main.command("load-json")
@click.argument("file", type=click.Path())
@click.option("--array", "arrays", multiple=True, required=True, metavar="PATH=DATASET",
              help="Load the array at JSON PATH (e.g. nodes, graph.edges) into DATASET. Repeatable.")
@click.option("--mode", type=click.Choice(MODES), help="Default: the dataset's.")
@click.option("--force", is_flag=True, help="Load even if the document is the one loaded last time.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@dsn_option
def load_json_cmd(file, arrays, mode, force, as_json, dsn):
    """Stream arrays of a large JSON document into datasets (never reading it whole), e.g.
    `deltapipe load-json graph.json --array nodes=nodes --array edges=edges`."""
    quiet_psycopg_log()
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
