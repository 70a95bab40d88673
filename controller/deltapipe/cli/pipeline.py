"""CLI commands for pipelines (new, deploy, plan, dag, run, schedule...). Registered on the main group."""

from __future__ import annotations

import time

import click

from deltapipe.cli.options import dsn_option as _dsn_option




def _conn(dsn):
    from deltapipe.db import connect, require_installed
    c = connect(dsn, autocommit=True)
    require_installed(c)
    return c


@click.command("new")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", help="Pipeline name (default: the directory name).")
def new_cmd(directory, name):
    """Create a small working pipeline in DIRECTORY (pipeline.toml, data/, models/)."""
    from deltapipe.pipeline.scaffold import scaffold
    files = scaffold(directory, name)
    for f in files:
        click.echo("  created %s" % f)
    click.echo("next: deltapipe plan %s && deltapipe run %s" % (directory, directory))


@click.command("deploy")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@_dsn_option
def deploy_cmd(directory, dsn):
    """Compile the pipeline in DIRECTORY into the catalog: models, fingerprints, dependencies."""
    from deltapipe import pipeline as pl
    with _conn(dsn) as conn:
        p = pl.load(directory, conn)
        r = pl.deploy(conn, p)
    click.echo("deployed pipeline %s: %d sources, %d models (%d edges)" % (p.name, len(p.sources), len(p.models),
                                                                          len(p.edges())))
    for k, label in (("datasets_created", "datasets created"), ("added", "new models"), ("changed", "SQL changed"),
                     ("removed", "removed models (tables kept)"), ("externals", "external tables read")):
        if r[k]:
            click.echo("  %s: %s" % (label, ", ".join(r[k])))


@click.command("plan")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--full-refresh", is_flag=True, help="Plan a full refresh of every model.")
@_dsn_option
def plan_cmd(directory, full_refresh, dsn):
    """Show which nodes `deltapipe run DIRECTORY` would run and why, without running anything."""
    from deltapipe import pipeline as pl
    with _conn(dsn) as conn:
        p = pl.load(directory, conn)
        rows = pl.plan(conn, p, full_refresh)
    click.echo("plan for pipeline %s:" % p.name)
    for r in rows:
        click.echo("  %-4s %-7s %-24s %s" % (r["action"], r["kind"], r["node"], r["reason"]))
        if r.get("refresh"):
            click.echo("  %-4s %-7s %-24s   refresh: %s" % ("", "", "", r["refresh"]))
            if r.get("key"):
                click.echo("  %-4s %-7s %-24s   key: %s%s" % ("", "", "", ", ".join(r["key"]),
                                                          " (inferred)" if r.get("key_inferred") else ""))
            for line in r.get("operators") or []:
                click.echo("  %-4s %-7s %-24s     %s" % ("", "", "", line))
        shape = r.get("shape") or {}
        if shape.get("changes"):
            click.echo("  %-4s %-7s %-24s   shape changes: %s (rebuilt and swapped)" % ("", "", "", ", ".join(shape["changes"])))
        elif shape.get("error"):
            click.echo("  %-4s %-7s %-24s   shape: cannot tell (%s)" % ("", "", "", shape["error"]))
        if r.get("affected_by"):
            click.echo("  %-4s %-7s %-24s   affected: upstream %s changes shape" % ("", "", "", ", ".join(r["affected_by"])))
        if r.get("audits"):
            click.echo("  %-4s %-7s %-24s   audits: %s" % ("", "", "", ", ".join(r["audits"])))
    runs = sum(r["action"] in ("run", "load") for r in rows)
    click.echo("%d to run, %d to skip" % (runs, len(rows) - runs))
    reshaped = [r["node"] for r in rows if (r.get("shape") or {}).get("changes")]
    if reshaped:
        affected = [r["node"] for r in rows if r.get("affected_by")]
        click.echo("models changing shape: %s; downstream affected: %s" % (", ".join(reshaped), ", ".join(affected) or "none"))
    for e in getattr(p, "externals", []):
        click.echo("  external table read: %s" % e)


@click.command("dag")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot"]), default="text", show_default=True)
@click.option("--offline", is_flag=True, help="Do not connect: tables that are neither sources nor models count as external.")
@_dsn_option
def dag_cmd(directory, fmt, offline, dsn):
    """Print the pipeline's graph (sources, models, external tables)."""
    from deltapipe import pipeline as pl
    if offline:
        p = pl.load(directory, None)
    else:
        with _conn(dsn) as conn:
            p = pl.load(directory, conn)
    click.echo(pl.render_dag(p, fmt))


@click.command("run")
@click.argument("target")
@click.option("--workers", "-j", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker connections running ready nodes in parallel.")
@click.option("--select", "-s", "select", multiple=True,
              help="Only these models: MODEL, MODEL+ (and downstream), +MODEL (and upstream). Repeatable.")
@click.option("--keep-going", is_flag=True, help="After a failure, still run the nodes that do not depend on it.")
@click.option("--full-refresh", is_flag=True, help="Rebuild every model even when nothing changed.")
@click.option("--resume", type=int, metavar="RUN", help="Continue run RUN (e.g. after its controller died).")
@click.option("--wait", is_flag=True, help="If the pipeline is running, wait for it instead of exiting.")
@click.option("--timeline/--no-timeline", default=True, show_default=True, help="Print a text timeline at the end.")
@click.option("--incremental-threshold", type=click.FloatRange(0), default=None, metavar="SHARE",
              help="Refresh a model in full when its inputs' change exceeds this share of their rows [default: 0.15].")
@_dsn_option
def run_cmd(target, workers, select, keep_going, full_refresh, resume, wait, timeline, incremental_threshold, dsn):
    """Run pipeline TARGET (a directory, or the name of a deployed pipeline): load changed source files,
    then refresh the models that need it."""
    from deltapipe.pipeline import runner
    from deltapipe.errors import DeltapipeError
    t0 = time.perf_counter()
    r = runner.run(dsn, target, workers=workers, select=list(select), keep_going=keep_going,
                   full_refresh=full_refresh, resume=resume, wait=wait,
                   on_event=lambda msg: click.echo(msg), incremental_threshold=incremental_threshold)
    print_run(r, timeline)
    counts = {}
    for n in r["nodes"]:
        counts[n["status"]] = counts.get(n["status"], 0) + 1
    click.echo("run %d %s in %.2fs: %s" % (r["id"], r["status"], time.perf_counter() - t0,
                                            ", ".join("%d %s" % (v, k) for k, v in sorted(counts.items()))))
    if r["status"] == "failed":
        failed = [n for n in r["nodes"] if n["status"] == "failed"]
        raise DeltapipeError("run %d failed: %s" % (r["id"], "; ".join("%s: %s" % (n["node"], n["error"]) for n in failed)),
                             hint="fix it and run again, or `deltapipe run %s --resume %d`" % (target, r["id"]))


def print_run(r: dict, timeline: bool = True) -> None:
    from deltapipe.pipeline.runner import timeline as tl
    click.echo("  %-22s %-6s %-8s %8s %10s %9s %9s %9s  %s" % ("NODE", "KIND", "STATUS", "SECONDS", "ROWS",
                                                               "+INS", "~UPD", "-DEL", "NOTE"))
    for n in r["nodes"]:
        dur = (n["finished_at"] - n["started_at"]).total_seconds() if n["finished_at"] and n["started_at"] else 0
        note = n["skip_reason"] or n["error"] or (n["strategy"] or "")
        click.echo("  %-22s %-6s %-8s %8.3f %10d %9d %9d %9d  %s" % (
            n["node"][:22], n["node_kind"], n["status"], dur, n["rows_in"], n["inserted"], n["updated"],
            n["deleted"], note))
    if timeline:
        for line in tl(r):
            click.echo(line)


@click.command("timeline")
@click.argument("run_id", type=int)
@_dsn_option
def timeline_cmd(run_id, dsn):
    """Print a pipeline run's nodes (start, end, duration, rows) and a text timeline."""
    from deltapipe.errors import DeltapipeError
    from deltapipe.pipeline.runner import run_record
    with _conn(dsn) as conn:
        if not conn.execute("SELECT 1 FROM deltapipe.run WHERE id = %s", (run_id,)).fetchone():
            raise DeltapipeError("unknown run %s" % run_id, hint="list runs with `deltapipe runs`")
        r = run_record(conn, run_id)
    click.echo("run %d  %s %s via %s  %s" % (r["id"], r["kind"], r["pipeline"] or "", r["trigger"], r["status"]))
    print_run(r, True)


@click.command("schedule")
@click.argument("pipeline")
@click.argument("cron")
@_dsn_option
def schedule_cmd(pipeline, cron, dsn):
    """Run deployed PIPELINE on a cron schedule inside PostgreSQL (pg_cron), e.g. '*/5 * * * *'."""
    from deltapipe.pipeline.schedule import schedule
    j = schedule(dsn, pipeline, cron)
    click.echo("scheduled %s: %s  (pg_cron job %s: %s)" % (pipeline, cron, j["jobid"], j["command"]))


@click.command("unschedule")
@click.argument("pipeline")
@_dsn_option
def unschedule_cmd(pipeline, dsn):
    """Remove the pg_cron schedule of PIPELINE."""
    from deltapipe.pipeline.schedule import unschedule
    unschedule(dsn, pipeline)
    click.echo("unscheduled %s" % pipeline)


@click.command("schedules")
@_dsn_option
def schedules_cmd(dsn):
    """List the pipelines scheduled with pg_cron in this database, with their last run."""
    from deltapipe.pipeline.schedule import schedules
    rows = schedules(dsn)
    if not rows:
        click.echo("no scheduled pipelines (add one with `deltapipe schedule NAME 'CRON'`)")
        return
    click.echo("%-20s %-16s %-7s %-26s %s" % ("PIPELINE", "SCHEDULE", "ACTIVE", "LAST START", "LAST STATUS"))
    for r in rows:
        click.echo("%-20s %-16s %-7s %-26s %s" % (r["pipeline"], r["schedule"], "yes" if r["active"] else "no",
                                                  r["last_start"] or "-", r["last_status"] or "-"))


@click.command("verify")
@click.argument("models", nargs=-1)
@click.option("--pipeline", "-p", help="Only models of this pipeline.")
@click.option("--limit", type=int, default=20, show_default=True, help="Mismatching rows shown per model.")
@_dsn_option
def verify_cmd(models, pipeline, limit, dsn):
    """Recompute models in full and compare them with their tables as multisets (all models, or MODELS).
    Prints mismatching rows (- missing from the table, + not in the recompute); exit status 1 on any mismatch."""
    from deltapipe.errors import DeltapipeError, from_db
    import psycopg
    bad: list[str] = []
    checked = 0
    with _conn(dsn) as conn:
        names = list(models) or [None]
        try:
            for name in names:
                rows = conn.execute("SELECT pipeline, model, side, row::text FROM deltapipe.verify(%s::text, %s::text)",
                                    (pipeline, name)).fetchall()
                shown: dict[str, int] = {}
                if name is None:
                    q = "SELECT pipeline, name FROM deltapipe.model WHERE %s::text IS NULL OR pipeline = %s ORDER BY 1, 2"
                    targets = conn.execute(q, (pipeline, pipeline)).fetchall()
                else:
                    targets = conn.execute("SELECT pipeline, name FROM deltapipe.model WHERE name = %s AND "
                                           "(%s::text IS NULL OR pipeline = %s) ORDER BY 1", (name, pipeline, pipeline)).fetchall()
                by = {}
                for r in rows:
                    by.setdefault((r[0], r[1]), []).append(r)
                for t in targets:
                    checked += 1
                    diffs = by.get(tuple(t), [])
                    if not diffs:
                        click.echo("ok        %s.%s" % t)
                        continue
                    bad.append(t[1])
                    click.echo("MISMATCH  %s.%s: %d row(s) differ" % (t[0], t[1], len(diffs)))
                    for r in diffs[:limit]:
                        click.echo("  %s %s" % (r[2], r[3]))
                    if len(diffs) > limit:
                        click.echo("  ... %d more" % (len(diffs) - limit))
                    shown[t[1]] = len(diffs)
        except psycopg.Error as e:
            raise from_db(e) from e
    if bad:
        raise DeltapipeError("%d model(s) differ from a full recompute: %s" % (len(bad), ", ".join(bad)),
                             hint="`deltapipe run DIR --full-refresh` rebuilds them")
    click.echo("%d model(s) equal their full recompute" % checked)


def register(main) -> None:
    """Add the pipeline commands to the `deltapipe` group."""
    for cmd in (new_cmd, deploy_cmd, plan_cmd, dag_cmd, run_cmd, verify_cmd, schedule_cmd, unschedule_cmd, schedules_cmd):
        main.add_command(cmd)
    runs = main.commands.get("runs")
    if runs is not None and hasattr(runs, "add_command"):
        runs.add_command(timeline_cmd)
