"""The `deltapipe` command line. Every command is a thin wrapper over a library function."""

from __future__ import annotations

import json
import logging
import sys

import click
import psycopg

from .cli_options import dsn_option
from . import __version__, datasets, runs as runs_mod
from .errors import DeltapipeError, from_db
from .loader import FORMATS, MODES, LoadOptions, load_file
from .server import LocalServer


class Cli(click.Group):
    """Expected errors become one line on stderr and exit status 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DeltapipeError as e:
            click.echo("error: %s" % e.one_line(), err=True)
            sys.exit(1)
        except psycopg.Error as e:
            click.echo("error: %s" % from_db(e).one_line(), err=True)
            sys.exit(1)




# psycopg logs "error ignored terminating Copy" at WARNING when a connection drops during
# COPY; the loader reports (or retries) that error itself, so keep it off the terminal.
logging.getLogger("psycopg").setLevel(logging.ERROR)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deltapipe")
def main():
    """deltapipe: load files into PostgreSQL and keep SQL models up to date, writing only what changed.

    \b
    Start here:
      deltapipe server start            # a local PostgreSQL in .deltapipe/pg (or pass --dsn)
      deltapipe init                    # install the catalog and the SQL API
      deltapipe dataset create people --key id --from people.csv
      deltapipe load people people.csv  # again later: only the changes are written
      deltapipe runs                    # what ran, with counts and timings
    """


# ---------------------------------------------------------------- server
@main.group()
def server():
    """Run a local PostgreSQL cluster for deltapipe (default .deltapipe/pg)."""


_data_dir = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                         help="Cluster directory (default .deltapipe/pg).")


@server.command("start")
@_data_dir
def server_start(data_dir):
    """Create (first time) and start the local cluster; print its DSN."""
    click.echo(LocalServer.at(data_dir).start())


@server.command("stop")
@_data_dir
def server_stop(data_dir):
    """Stop the local cluster."""
    click.echo("stopped" if LocalServer.at(data_dir).stop() else "not running")


@server.command("status")
@_data_dir
def server_status(data_dir):
    """Say whether the local cluster runs, and its DSN."""
    st = LocalServer.at(data_dir).status()
    click.echo("running  %s" % st["dsn"] if st["running"] else "stopped  (%s)" % st["data_dir"])
    if not st["running"]:
        sys.exit(3)


# ---------------------------------------------------------------- init
@main.command()
@dsn_option
def init(dsn):
    """Install or upgrade the catalog and every SQL routine (idempotent)."""
    from .install import install
    r = install(dsn)
    click.echo("deltapipe catalog at revision %s, %d routines applied" % (r["revision"], r["routines"]))


# ---------------------------------------------------------------- datasets
@main.group()
def dataset():
    """Create, list, show and drop datasets."""


@dataset.command("create")
@click.argument("name")
@click.option("--key", required=True, help="Key column(s), comma-separated.")
@click.option("--columns", help='Typed columns, e.g. "id bigint, name text". Omit to infer them from --from FILE.')
@click.option("--from", "sample_file", type=click.Path(), help="File whose header and first rows give the columns.")
@click.option("--table", help="Target table SCHEMA.TABLE (default public.NAME).")
@click.option("--mode", type=click.Choice(MODES), default="snapshot", show_default=True, help="Default load mode.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Format of --from (default: by extension).")
@click.option("--delimiter", help="Field delimiter of --from.")
@click.option("--encoding", default="utf8", show_default=True)
@click.option("--no-header", is_flag=True, help="--from has no header line (columns are named c1, c2, ...).")
@dsn_option
def dataset_create(name, key, columns, sample_file, table, mode, fmt, delimiter, encoding, no_header, dsn):
    """Declare dataset NAME with its key and typed columns."""
    keys = [k.strip() for k in key.split(",") if k.strip()]
    ds = datasets.create(dsn, name, keys, columns, sample_file=sample_file, table=table, mode=mode, fmt=fmt,
                         delimiter=delimiter, encoding=encoding, header=not no_header)
    click.echo("dataset %s -> %s.%s (key %s, mode %s)" % (ds["name"], ds["target_schema"], ds["target_table"],
                                                        ", ".join(ds["key_cols"]), ds["mode"]))
    if ds["inferred"]:
        click.echo("columns inferred from %s:" % sample_file)
    for c in ds["columns"]:
        click.echo("  %-24s %s" % (c["name"], c["type"]))


@dataset.command("list")
@dsn_option
def dataset_list(dsn):
    """List datasets with their row counts and last load."""
    rows = datasets.list_all(dsn)
    if not rows:
        click.echo("no datasets yet (create one with `deltapipe dataset create`)")
        return
    click.echo("%-20s %-28s %-10s %12s  %s" % ("NAME", "TABLE", "MODE", "ROWS", "LAST LOAD"))
    for d in rows:
        click.echo("%-20s %-28s %-10s %12d  %s" % (d["name"], "%s.%s" % (d["target_schema"], d["target_table"]),
                                                 d["mode"], d["row_count"],
                                                 d["last_loaded_at"].strftime("%Y-%m-%d %H:%M:%S") if d["last_loaded_at"] else "-"))


@dataset.command("show")
@click.argument("name")
@dsn_option
def dataset_show(name, dsn):
    """Show a dataset: columns, key, checksum, recent loads."""
    d = datasets.show(dsn, name)
    click.echo("dataset   %s" % d["name"])
    click.echo("table     %s.%s" % (d["target_schema"], d["target_table"]))
    click.echo("key       %s" % ", ".join(d["key_cols"]))
    click.echo("mode      %s" % d["mode"])
    click.echo("rows      %d" % d["row_count"])
    click.echo("checksum  %s" % d["checksum"])
    click.echo("columns")
    for c in d["columns"]:
        click.echo("  %-24s %s" % (c["name"], c["type"]))
    if d["loads"]:
        click.echo("recent loads")
        for l in d["loads"]:
            click.echo("  run %-6s %-8s +%d ~%d -%d =%d !%d  %s" % (l["run_id"], l["status"], l["inserted"], l["updated"],
                                                             l["deleted"], l["unchanged"], l["rejected"],
                                                             l["source_file"] or ""))


@dataset.command("drop")
@click.argument("name")
@click.option("--drop-table", is_flag=True, help="Also drop the target table.")
@dsn_option
def dataset_drop(name, drop_table, dsn):
    """Forget dataset NAME (its table stays unless --drop-table)."""
    datasets.drop(dsn, name, drop_table)
    click.echo("dropped dataset %s%s" % (name, " and its table" if drop_table else ""))


@dataset.group("rule")
def dataset_rule():
    """Validation rules: boolean SQL expressions every row must satisfy."""


@dataset_rule.command("add")
@click.argument("name")
@click.argument("rule")
@click.argument("predicate")
@dsn_option
def dataset_rule_add(name, rule, predicate, dsn):
    """Add (or replace) RULE on dataset NAME, e.g. `positive amount >= 0`.

    Rows for which PREDICATE is false are rejected with the rule's name; NULL passes."""
    datasets.add_rule(dsn, name, rule, predicate)
    click.echo("rule %s on %s: %s" % (rule, name, predicate))


@dataset_rule.command("list")
@click.argument("name")
@dsn_option
def dataset_rule_list(name, dsn):
    """List the rules of dataset NAME."""
    rs = datasets.rules(dsn, name)
    if not rs:
        click.echo("no rules on %s" % name)
    for r in rs:
        click.echo("%-24s %s" % (r["name"], r["predicate"]))


@dataset_rule.command("drop")
@click.argument("name")
@click.argument("rule")
@dsn_option
def dataset_rule_drop(name, rule, dsn):
    """Remove RULE from dataset NAME."""
    datasets.drop_rule(dsn, name, rule)
    click.echo("dropped rule %s from %s" % (rule, name))


@dataset.command("set")
@click.argument("name")
@click.option("--max-rejects", help="Default reject limit for loads: N rows or P% of the rows read ('' removes it).")
@dsn_option
def dataset_set(name, max_rejects, dsn):
    """Set per-dataset defaults."""
    if max_rejects is None:
        raise DeltapipeError("nothing to set", hint="give --max-rejects")
    opts = datasets.set_option(dsn, name, "max_rejects", max_rejects or None)
    click.echo("%s: max_rejects %s" % (name, opts.get("max_rejects", "none")))


@dataset.command("add-columns")
@click.argument("name")
@click.option("--columns", required=True, help='New typed columns, e.g. "email text, score int".')
@dsn_option
def dataset_add_columns(name, columns, dsn):
    """Add columns to dataset NAME and its table (existing rows get NULL until reloaded)."""
    added = datasets.add_columns(dsn, name, columns)
    click.echo("added: %s" % (", ".join("%s %s" % (c["name"], c["type"]) for c in added) or "nothing (already there)"))


# ---------------------------------------------------------------- load
def print_load(r: dict) -> None:
    if r["status"] == "skipped":
        click.echo("%s: skipped, %s (run %s; --force to load anyway)" % (r["node"], r["skip_reason"], r["run_id"]))
        return
    click.echo("%s <- %s  (run %s, %s mode, %s)" % (r["node"], r["source_file"], r["run_id"], r["mode"], r["strategy"]))
    click.echo("  rows read   %10d" % r["rows_in"])
    for k in ("inserted", "updated", "deleted", "unchanged", "rejected", "duplicates"):
        click.echo("  %-11s %10d" % (k, r[k]))
    click.echo("  table rows  %10d" % (r.get("row_count") or 0))
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
              "deleted); upsert: insert or update; append: insert new keys only; changes: rows carry an op column.")
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
    opts = LoadOptions(mode=mode, format=fmt, delimiter=delimiter, quote=quote, null=null, encoding=encoding,
                       header=not no_header, op_column=op_column, order_column=order_column, strategy=strategy,
                       force=force, allow_empty=allow_empty, max_rejects=max_rejects,
                       on_schema_change=on_schema_change, commit_every=commit_every, resume=resume)
    r = load_file(dsn, name, file, opts)
    if as_json:
        click.echo(json.dumps(r, default=str))
    else:
        print_load(r)


# ---------------------------------------------------------------- runs
@main.group(invoke_without_command=True)
@click.option("--limit", default=20, show_default=True)
@dsn_option
@click.pass_context
def runs(ctx, limit, dsn):
    """List recent runs (`deltapipe runs show ID` for one)."""
    if ctx.invoked_subcommand:
        return
    rows = runs_mod.list_runs(dsn, limit)
    if not rows:
        click.echo("no runs yet")
        return
    click.echo("%6s  %-8s %-4s %-8s %-19s %8s  %-20s %9s %8s %8s %8s %7s" % (
        "ID", "KIND", "VIA", "STATUS", "STARTED", "SECONDS", "TARGET", "READ", "INS", "UPD", "DEL", "REJ"))
    for r in rows:
        click.echo("%6d  %-8s %-4s %-8s %-19s %8.2f  %-20s %9d %8d %8d %8d %7d" % (
            r["id"], r["kind"], r["trigger"], r["status"], r["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
            float(r["seconds"] or 0), (r["target"] or "")[:20], r["rows_in"], r["inserted"], r["updated"],
            r["deleted"], r["rejected"]))


@runs.command("show")
@click.argument("run_id", type=int)
@click.option("--rejects", default=20, show_default=True, help="How many rejects to print.")
@dsn_option
def runs_show(run_id, rejects, dsn):
    """Show one run: its nodes, counts, phase timings and rejects."""
    r = runs_mod.show_run(dsn, run_id, rejects)
    click.echo("run %d  %s via %s  %s" % (r["id"], r["kind"], r["trigger"], r["status"]))
    click.echo("started %s  finished %s" % (r["started_at"], r["finished_at"] or "-"))
    if r["error"]:
        click.echo("error: %s" % r["error"])
    for n in r["nodes"]:
        ph = n["phases"] or {}
        dur = (n["finished_at"] - n["started_at"]).total_seconds() if n["finished_at"] and n["started_at"] else 0
        click.echo("  %-20s %-8s %7.2fs  read %d  +%d ~%d -%d =%d  rejected %d  duplicates %d%s" % (
            n["node"], n["status"], dur, n["rows_in"], n["inserted"], n["updated"], n["deleted"], n["unchanged"],
            n["rejected"], n["duplicates"], ("  [%s]" % n["strategy"]) if n["strategy"] else ""))
        if ph:
            click.echo("  %-20s phases: %s" % ("", "  ".join("%s %.0fms" % (k, float(v)) if isinstance(v, (int, float))
                                                              else "%s %s" % (k, v) for k, v in ph.items())))
        if n["skip_reason"]:
            click.echo("  %-20s skipped: %s" % ("", n["skip_reason"]))
        if n["error"]:
            click.echo("  %-20s error: %s" % ("", n["error"]))
    if r["reject_count"]:
        click.echo("rejects (%d%s):" % (r["reject_count"], ", first %d" % rejects if r["reject_count"] > rejects else ""))
        for j in r["rejects"]:
            raw = (j["raw_line"] or "").replace("\n", "\\n")
            click.echo("  line %-8s %-12s %-6s %s" % (j["line_no"], j["column_name"] or "-", j["sqlstate"], j["message"]))
            click.echo("       | %s" % (raw[:150] + ("..." if len(raw) > 150 else "")))
    if r.get("audits"):
        click.echo("audits:")
        for a in r["audits"]:
            state = "ok" if not a["failing_rows"] else ("FAILED" if a["blocking"] else "warn")
            click.echo("  %-20s %-6s %s%s: %d offending row%s" % (
                a["node"], state, a["audit"], "" if a["blocking"] else " [warn]", a["failing_rows"],
                "" if a["failing_rows"] == 1 else "s"))
            for row in (a["sample"] or [])[:10]:
                click.echo("       | %s" % json.dumps(row, default=str, ensure_ascii=False)[:200])


@main.command()
@click.argument("name")
@click.option("--run", "run_id", type=int, help="Only the changes of this run.")
@click.option("--pipeline", "-p", help="The model's pipeline (when several have a model of that name).")
@click.option("--limit", type=int, default=20, show_default=True, help="How many changes to print, newest first.")
@dsn_option
def changes(name, run_id, pipeline, limit, dsn):
    """What loads changed in dataset NAME, or refreshes in model NAME: op (I inserted, U updated, D deleted),
    key, the row before and the row after. A dataset's changes are in deltapipe.changeset, a model's in its change log
    (SELECT * FROM deltapipe.changes(pipeline, model, run))."""
    r = runs_mod.changes(dsn, name, run_id, pipeline, limit)
    what = "model %s.%s" % (r["pipeline"], name) if r["kind"] == "model" else "dataset %s" % name
    click.echo("%s: %d change%s%s%s" % (what, r["total"], "" if r["total"] == 1 else "s",
                                       " in run %d" % run_id if run_id else "",
                                       ", the newest %d:" % limit if r["total"] > limit else ""))
    for c in r["rows"]:
        click.echo("  run %-6s %s  %s%s%s" % (c["run_id"], c["op"], json.dumps(c["key"], default=str, ensure_ascii=False),
                                             "".join("  %s %s" % (w, json.dumps(c[w], default=str, ensure_ascii=False))
                                                     for w in ("before", "after") if c.get(w) is not None), ""))


@main.command()
@click.argument("run_id", type=int)
@click.option("--cascade", is_flag=True, help="Also roll back later runs that changed the same tables (newest first).")
@dsn_option
def rollback(run_id, cascade, dsn):
    """Restore every table RUN changed to its state before the run."""
    r = runs_mod.rollback(dsn, run_id, cascade)
    for c in r["cascaded"]:
        click.echo("rolled back run %s first" % c)
    for n in r["restored"]:
        click.echo("%-20s %s: %s" % (n["node"], n["table"], "dropped (the run created it)" if n["strategy"] == "create"
                                     else "%d rows restored" % n["rows"]))
    click.echo("run %s rolled back" % run_id)


@main.command()
@click.option("--retention", default="30 days", show_default=True,
              help="Prune finished runs (with their rejects, changesets and change-log rows) older than this PostgreSQL interval.")
@dsn_option
def maintain(retention, dsn):
    """Housekeeping: mark dead runs, drop orphaned staging tables, prune old runs, ANALYZE loaded tables.

    Safe while loads run. The same as CALL deltapipe.maintain(); schedule that with pg_cron."""
    from .db import connect, require_installed
    with connect(dsn) as conn:
        require_installed(conn)
        try:
            r = conn.execute("CALL deltapipe.maintain(%s::interval)", (retention,)).fetchone()[0]
        except psycopg.Error as e:
            raise from_db(e) from e
    for k, v in r.items():
        click.echo("%-24s %s" % (k.replace("_", " "), v))


# ---------------------------------------------------------------- demo
@main.command()
@click.option("--dir", "workdir", default=".deltapipe/demo", show_default=True, type=click.Path(file_okay=False))
@dsn_option
def demo(workdir, dsn):
    """Load a sample file, then a changed version; show what changed and the rejects."""
    from .demo import run_demo
    run_demo(dsn, workdir, echo=click.echo, show_load=print_load)




from . import cli_pipeline  # noqa: E402  - pipeline commands live in their own module

cli_pipeline.register(main)

from . import cli_lineage  # noqa: E402
cli_lineage.register(main)
