"""`deltapipe runs`, `changes`, `rollback`, `maintain`."""

from __future__ import annotations

import json

import click
import psycopg

from deltapipe.cli.options import dsn_option
from deltapipe.ops import runs as runs_mod
from deltapipe.errors import from_db

from deltapipe.cli.app import main

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
    from deltapipe.db import connect, require_installed
    with connect(dsn) as conn:
        require_installed(conn)
        try:
            r = conn.execute("CALL deltapipe.maintain(%s::interval)", (retention,)).fetchone()[0]
        except psycopg.Error as e:
            raise from_db(e) from e
    for k, v in r.items():
        click.echo("%-24s %s" % (k.replace("_", " "), v))


# ---------------------------------------------------------------- demo
