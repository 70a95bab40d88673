"""`deltapipe dataset ...`: declare, inspect, drop datasets; rules; options; new columns."""

from __future__ import annotations


import click

from deltapipe.cli.options import dsn_option
from deltapipe.load import datasets
from deltapipe.errors import DeltapipeError
from deltapipe.load.loader import FORMATS, MODES

from deltapipe.cli.app import main

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
@click.option("--history-table", help="history mode: table of every version, TABLE or SCHEMA.TABLE "
              "(default: the target's name + _history).")
@click.option("--valid-from-column", help="history mode: column where a version starts (default valid_from).")
@click.option("--valid-to-column", help="history mode: column where a version ends, NULL while current (default valid_to).")
@click.option("--distributed", is_flag=True, help="Citus: the target is a distributed table, by the first key column.")
@dsn_option
def dataset_create(name, key, columns, sample_file, table, mode, fmt, delimiter, encoding, no_header,
                   history_table, valid_from_column, valid_to_column, distributed, dsn):
    """Declare dataset NAME with its key and typed columns."""
    keys = [k.strip() for k in key.split(",") if k.strip()]
    ds = datasets.create(dsn, name, keys, columns, sample_file=sample_file, table=table, mode=mode, fmt=fmt,
                         delimiter=delimiter, encoding=encoding, header=not no_header,
                         options={"history_table": history_table, "valid_from_column": valid_from_column,
                                  "valid_to_column": valid_to_column, "distributed": "true" if distributed else None})
    click.echo("dataset %s -> %s.%s (key %s, mode %s%s)" % (ds["name"], ds["target_schema"], ds["target_table"],
                                                          ", ".join(ds["key_cols"]), ds["mode"],
                                                          ", distributed by %s" % ds["key_cols"][0] if distributed else ""))
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
    if (d.get("options") or {}).get("distributed"):
        click.echo("citus     distributed by %s" % d["key_cols"][0])
    if d.get("history"):
        h = d["history"]
        click.echo("history   %s (%s, %s)%s" % (h["name"], h["from"], h["to"], "" if h["exists"] else ", from the next load"))
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
@click.option("--history-table", help="history mode, before its first load: table of every version ('' = default).")
@click.option("--valid-from-column", help="history mode, before its first load: column where a version starts.")
@click.option("--valid-to-column", help="history mode, before its first load: column where a version ends.")
@click.option("--distributed/--no-distributed", default=None,
              help="Citus: distribute the target by the first key column (now, when it exists).")
@dsn_option
def dataset_set(name, max_rejects, history_table, valid_from_column, valid_to_column, distributed, dsn):
    """Set per-dataset defaults."""
    given = {k: v for k, v in (("max_rejects", max_rejects), ("history_table", history_table),
                               ("valid_from_column", valid_from_column), ("valid_to_column", valid_to_column),
                               ("distributed", None if distributed is None else "true" if distributed else ""))
             if v is not None}
    if not given:
        raise DeltapipeError("nothing to set",
                             hint="give --max-rejects, --history-table, --valid-from-column, --valid-to-column "
                                  "or --distributed")
    for k, v in given.items():
        opts = datasets.set_option(dsn, name, k, v or None)
        click.echo("%s: %s %s" % (name, k, opts.get(k, "none" if k == "max_rejects" else
                                                    "false" if k == "distributed" else "default")))


@dataset.command("add-columns")
@click.argument("name")
@click.option("--columns", required=True, help='New typed columns, e.g. "email text, score int".')
@dsn_option
def dataset_add_columns(name, columns, dsn):
    """Add columns to dataset NAME and its table (existing rows get NULL until reloaded)."""
    added = datasets.add_columns(dsn, name, columns)
    click.echo("added: %s" % (", ".join("%s %s" % (c["name"], c["type"]) for c in added) or "nothing (already there)"))


# ---------------------------------------------------------------- load
