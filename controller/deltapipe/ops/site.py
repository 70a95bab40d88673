"""`deltapipe docs`: a browsable site of a project's data, from the catalog.

`collect(conn, pipelines)` reads what the catalog knows about the pipelines' datasets and models (columns and
types, SQL, keys, how each model is refreshed, audits and their last results, table- and column-level lineage,
recent runs, when each table last changed) into one JSON-able dict; `render(data)` turns it into one HTML page
(inline CSS and JS, the data embedded as JSON, no external assets: it works from file://) that shows a page per
table, the project DAG, a search over tables and columns, and run pages linking the run reports.
`write_site(dsn, pipelines, out_dir)` writes index.html and runs/run-N.html (`deltapipe report`);
`serve(dsn, pipelines, port)` answers the same pages from the live catalog.

Column lineage is computed from the models' SQL in the catalog (lineage.graph.analyse_queries: stars expanded
with the columns of the tables they read), so `deltapipe lineage scan` is not needed first.
"""

from __future__ import annotations

import http.server
import json
import re
import socketserver
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import psycopg

from deltapipe.db import connect, require_installed
from deltapipe.errors import DeltapipeError, from_db
from deltapipe.lineage.graph import analyse_queries, catalog_tables

ASSETS = Path(__file__).with_name("site_assets")
RUNS_SHOWN = 30          # runs listed on the site (and reports written with it)
NODE_RUNS_SHOWN = 10     # last runs shown on a table's page


def _iso(v):
    return v.isoformat() if isinstance(v, datetime) else v


def _rows(conn, sql: str, args=()) -> list[dict]:
    cur = conn.execute(sql, args)
    names = [c.name for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _qualify(name: str) -> str:
    return name if "." in name else "public.%s" % name


def _refresh(m: dict) -> dict:
    """How a model is refreshed: incremental (its shape and how each operator is maintained) or full and why."""
    c = SimpleNamespace(incremental=bool(m["incremental"]), shape=m["shape"], program=m["program"] or {},
                        agg_spec=m["agg_spec"] or {}, why_full=m["why_full"])
    try:
        from deltapipe.pipeline.plan import operators
        ops = operators(c)
    except Exception:  # noqa: BLE001 - a program of another compiler version: its own plan lines, if any
        ops = list((m["program"] or {}).get("operators") or [])
    shape = m["shape"]
    if shape == "keys" and (m["program"] or {}).get("restrict_col"):
        shape = "affected keys on %s" % m["program"]["restrict_col"]
    if c.incremental:
        summary = "incremental (%s)" % shape if shape else "incremental"
    else:
        summary = "full: %s" % (m["why_full"] or "not compiled incrementally")
    return {"incremental": c.incremental, "shape": shape, "summary": summary, "operators": ops,
            "why_full": m["why_full"]}


def collect(conn: psycopg.Connection, pipelines: list[str] | None = None, runs: int = RUNS_SHOWN) -> dict:
    """Everything the site shows, as JSON-able data (see the module docstring)."""
    deployed = _rows(conn, "SELECT name, root, schema_name, deployed_at FROM deltapipe.pipeline ORDER BY name")
    names = [p["name"] for p in deployed]
    unknown = [p for p in (pipelines or []) if p not in names]
    if unknown:
        raise DeltapipeError("unknown pipeline %s" % ", ".join(unknown), sqlstate="DP201",
                             detail="deployed: %s" % (", ".join(names) or "none"),
                             hint="deploy it first: deltapipe deploy DIR")
    sel = list(dict.fromkeys(pipelines)) if pipelines else names
    pls = [p for p in deployed if p["name"] in sel]
    schema_of = {p["name"]: p["schema_name"] for p in pls}

    models = _rows(conn, """SELECT pipeline, name, target_schema, target_table, sql, key_cols, key_inferred, incremental,
                                   shape, why_full, program, agg_spec, audits, row_count, last_refreshed_at, source_file,
                                   deployed_at
                              FROM deltapipe.model WHERE pipeline = ANY(%s) ORDER BY pipeline, name""", (sel,))
    medges = _rows(conn, "SELECT pipeline, node, upstream, upstream_kind FROM deltapipe.model_edge "
                         "WHERE pipeline = ANY(%s)", (sel,))
    declared = {s.get("dataset") for p in _rows(conn, "SELECT config FROM deltapipe.pipeline WHERE name = ANY(%s)", (sel,))
                for s in ((p["config"] or {}).get("sources") or []) if isinstance(s, dict)}
    wanted = declared | {e["upstream"] for e in medges if e["upstream_kind"] == "source"}
    datasets = _rows(conn, """SELECT name, target_schema, target_table, key_cols, columns, mode, options, row_count,
                                     last_loaded_at, created_at FROM deltapipe.dataset
                               WHERE %s OR name = ANY(%s) ORDER BY name""", (not pipelines, sorted(x for x in wanted if x)))

    tables: dict[str, dict] = {}
    node_of: dict[tuple, str] = {}   # (pipeline or None, node name) -> table id

    def table(tid: str, kind: str, name: str, **kw) -> dict:
        t = tables.get(tid)
        if t is None:
            s, _, n = tid.partition(".")
            t = tables[tid] = {"id": tid, "kind": kind, "name": name, "schema": s, "table": n, "columns": [],
                               "upstream": [], "downstream": [], "runs": [], "audits": [], "key": [],
                               "description": None, "last_change": None}
        t.update(kw)
        return t

    for d in datasets:
        tid = "%s.%s" % (d["target_schema"], d["target_table"])
        table(tid, "dataset", d["name"], key=list(d["key_cols"] or []), mode=d["mode"], options=d["options"] or {},
              rows=d["row_count"], last_loaded_at=_iso(d["last_loaded_at"]), created_at=_iso(d["created_at"]),
              columns=[{"name": c.get("name"), "type": c.get("type")} for c in
                       (d["columns"] if isinstance(d["columns"], list) else []) if isinstance(c, dict)])
        node_of[(None, d["name"])] = tid
    for m in models:
        tid = "%s.%s" % (m["target_schema"], m["target_table"])
        cols = [{"name": c, "type": None} for c in ((m["program"] or {}).get("columns") or [])]
        table(tid, "model", m["name"], pipeline=m["pipeline"], key=list(m["key_cols"] or []),
              key_inferred=bool(m["key_inferred"]), sql=m["sql"], file=m["source_file"], rows=m["row_count"],
              last_refreshed_at=_iso(m["last_refreshed_at"]), deployed_at=_iso(m["deployed_at"]),
              refresh=_refresh(m), columns=cols,
              audit_defs=[{"name": a.get("name"), "blocking": bool(a.get("blocking")), "sql": a.get("sql"),
                           "line": a.get("line")} for a in (m["audits"] or []) if isinstance(a, dict)])
        node_of[(m["pipeline"], m["name"])] = tid
    for e in medges:
        dst = node_of.get((e["pipeline"], e["node"]))
        if e["upstream_kind"] == "model":
            src = node_of.get((e["pipeline"], e["upstream"]))
        elif e["upstream_kind"] == "source":
            src = node_of.get((None, e["upstream"]))
            if src is None:
                src = _qualify(e["upstream"])
                table(src, "dataset", e["upstream"])
        else:
            src = _qualify(e["upstream"])
            table(src, "external", src)
        if src and dst:
            if src not in tables[dst]["upstream"]:
                tables[dst]["upstream"].append(src)
            if dst not in tables[src]["downstream"]:
                tables[src]["downstream"].append(dst)

    # column lineage from the models' SQL, stars expanded with the columns the database and catalog know
    known = catalog_tables(conn)
    queries = {"%s.%s" % (m["target_schema"], m["target_table"]): (m["sql"], schema_of.get(m["pipeline"], "public"))
               for m in models}
    col_edges: list[list[str]] = []
    for tid, res in analyse_queries(queries, known).items():
        st = (res.get("statements") or [{}])[-1]
        if not tables[tid]["columns"] and st.get("outputs"):
            tables[tid]["columns"] = [{"name": c, "type": None} for c in st["outputs"]]
        for dst, src_t, src_c in st.get("columns") or []:
            if src_t not in tables:
                table(src_t, "external", src_t)
            edge = [src_t, src_c, tid, dst]
            if edge not in col_edges:
                col_edges.append(edge)
        if "error" in res:
            tables[tid]["lineage_error"] = res["error"].get("message")

    # columns and types of the tables as they are in the database (and their comments)
    ids = sorted(tables)
    attrs = _rows(conn, r"""
        SELECT t.s || '.' || t.n AS tid, a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type,
               a.attnotnull AS not_null, col_description(c.oid, a.attnum) AS comment,
               obj_description(c.oid, 'pg_class') AS table_comment
          FROM unnest(%s::text[], %s::text[]) AS t(s, n)
          JOIN pg_namespace ns ON ns.nspname = t.s
          JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = t.n
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE a.attname NOT LIKE '\_dp\_%%'
         ORDER BY 1, a.attnum""", ([i.split(".", 1)[0] for i in ids], [i.split(".", 1)[1] for i in ids]))
    live: dict[str, list[dict]] = {}
    for a in attrs:
        live.setdefault(a["tid"], []).append({"name": a["name"], "type": a["type"], "not_null": a["not_null"],
                                              "comment": a["comment"]})
        if a["table_comment"] and not re.match(r"deltapipe (dataset|model) ", a["table_comment"]):
            tables[a["tid"]]["description"] = a["table_comment"]  # (not the comment deltapipe puts on its tables)
    for tid, cols in live.items():
        tables[tid]["columns"] = cols
    for t in tables.values():
        if not t["columns"] and t["id"] in known and known[t["id"]]:
            t["columns"] = [{"name": c, "type": None} for c in known[t["id"]]]
        t["exists"] = t["id"] in live

    # runs: node runs of each table, last changes, audits' last results
    pairs = []  # (table id, pipeline or None, node)
    for (pl, node), tid in node_of.items():
        pairs.append((tid, pl, node))
    if pairs:
        nrs = _rows(conn, """
            SELECT p.tid, n.id, n.run_id, n.node_kind, n.status, n.strategy, n.started_at, n.finished_at, n.rows_in,
                   n.inserted, n.updated, n.deleted, n.unchanged, n.rejected, n.skip_reason, n.error, n.full_because,
                   n.phases, r.pipeline, r.kind AS run_kind, r.status AS run_status
              FROM unnest(%s::text[], %s::text[], %s::text[]) AS p(tid, pipeline, node)
              CROSS JOIN LATERAL (
                  SELECT n.* FROM deltapipe.node_run n JOIN deltapipe.run r ON r.id = n.run_id
                   WHERE n.node = p.node AND (r.pipeline IS NOT DISTINCT FROM p.pipeline
                                              OR (p.pipeline IS NULL AND NOT n.phases ? 'load_runs'))
                   ORDER BY n.id DESC LIMIT %s) n
              JOIN deltapipe.run r ON r.id = n.run_id
             ORDER BY p.tid, n.id DESC""", ([x[0] for x in pairs], [x[1] for x in pairs], [x[2] for x in pairs],
                                           NODE_RUNS_SHOWN))
        for n in nrs:
            secs = (n["finished_at"] - n["started_at"]).total_seconds() if n["finished_at"] and n["started_at"] else None
            tables[n["tid"]]["runs"].append({
                "run": n["run_id"], "status": n["status"], "kind": n["node_kind"], "strategy": n["strategy"],
                "started_at": _iso(n["started_at"]), "seconds": secs, "rows_in": n["rows_in"],
                "inserted": n["inserted"], "updated": n["updated"], "deleted": n["deleted"], "rejected": n["rejected"],
                "note": n["error"] or n["skip_reason"] or n["full_because"] or "", "run_status": n["run_status"]})
        changes = _rows(conn, """
            SELECT p.tid, c.finished_at, c.run_id
              FROM unnest(%s::text[], %s::text[], %s::text[]) AS p(tid, pipeline, node)
              CROSS JOIN LATERAL (
                  SELECT n.finished_at, n.run_id FROM deltapipe.node_run n JOIN deltapipe.run r ON r.id = n.run_id
                   WHERE n.node = p.node AND n.status = 'done' AND n.inserted + n.updated + n.deleted > 0
                     AND (p.pipeline IS NULL OR r.pipeline = p.pipeline) AND r.status <> 'rolled_back'
                   ORDER BY n.id DESC LIMIT 1) c""", ([x[0] for x in pairs], [x[1] for x in pairs], [x[2] for x in pairs]))
        for c in changes:
            tables[c["tid"]]["last_change"] = {"at": _iso(c["finished_at"]), "run": c["run_id"]}
    results = _rows(conn, """
        SELECT DISTINCT ON (a.node, a.audit) r.pipeline, a.node, a.audit, a.blocking, a.failing_rows, a.sample,
               a.checked_at, a.run_id
          FROM deltapipe.audit_result a JOIN deltapipe.run r ON r.id = a.run_id
         WHERE r.pipeline = ANY(%s) ORDER BY a.node, a.audit, a.run_id DESC""", (sel,))
    last_result = {(x["pipeline"], x["node"], x["audit"]): x for x in results}
    for t in tables.values():
        if t["kind"] != "model":
            continue
        for a in t.get("audit_defs") or []:
            r = last_result.get((t["pipeline"], t["name"], a["name"]))
            t["audits"].append({**a, "last": None if r is None else {
                "run": r["run_id"], "failing_rows": r["failing_rows"], "checked_at": _iso(r["checked_at"]),
                "sample": r["sample"]}})
        t.pop("audit_defs", None)

    ds_names = [d["name"] for d in datasets]
    run_rows = _rows(conn, """
        SELECT id, pipeline, kind, trigger, status, started_at, finished_at, error, args FROM deltapipe.run
         WHERE pipeline = ANY(%s) OR (kind = 'load' AND args->>'dataset' = ANY(%s))
         ORDER BY id DESC LIMIT %s""", (sel, ds_names, runs))
    run_ids = [r["id"] for r in run_rows]
    run_nodes = _rows(conn, """
        SELECT run_id, node, node_kind, status, strategy, started_at, finished_at, rows_in, inserted, updated, deleted,
               rejected, skip_reason, error, full_because FROM deltapipe.node_run
         WHERE run_id = ANY(%s) ORDER BY run_id, started_at NULLS LAST, id""", (run_ids,))
    by_run: dict[int, list] = {}
    for n in run_nodes:
        secs = (n["finished_at"] - n["started_at"]).total_seconds() if n["finished_at"] and n["started_at"] else None
        by_run.setdefault(n["run_id"], []).append({
            "node": n["node"], "kind": n["node_kind"], "status": n["status"], "strategy": n["strategy"],
            "started_at": _iso(n["started_at"]), "seconds": secs, "rows_in": n["rows_in"], "inserted": n["inserted"],
            "updated": n["updated"], "deleted": n["deleted"], "rejected": n["rejected"],
            "note": n["error"] or n["skip_reason"] or n["full_because"] or ""})
    run_list = []
    for r in run_rows:
        nodes = by_run.get(r["id"], [])
        for n in nodes:
            n["table"] = node_of.get((r["pipeline"], n["node"])) or node_of.get((None, n["node"]))
        secs = (r["finished_at"] - r["started_at"]).total_seconds() if r["finished_at"] and r["started_at"] else None
        run_list.append({"id": r["id"], "pipeline": r["pipeline"], "kind": r["kind"], "trigger": r["trigger"],
                         "status": r["status"], "started_at": _iso(r["started_at"]),
                         "finished_at": _iso(r["finished_at"]), "seconds": secs, "error": r["error"],
                         "dataset": (r["args"] or {}).get("dataset") if r["kind"] == "load" else None,
                         "nodes": nodes})
    from deltapipe import __version__
    return {"generated_at": datetime.now(timezone.utc).isoformat(), "version": __version__,
            "database": conn.info.dbname,
            "pipelines": [{"name": p["name"], "root": p["root"], "schema": p["schema_name"],
                           "deployed_at": _iso(p["deployed_at"])} for p in pls],
            "tables": [tables[i] for i in sorted(tables, key=lambda x: (tables[x]["kind"] != "dataset",
                                                                        tables[x]["kind"] == "external", x))],
            "column_edges": col_edges, "runs": run_list}


# ------------------------------------------------------------------ the page


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def render(data: dict, live: bool = False) -> str:
    """One self-contained HTML page: the data as JSON, the CSS and the JS inline."""
    payload = json.dumps({**data, "live": live}, default=str, separators=(",", ":"))
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    title = "deltapipe docs: %s" % (", ".join(p["name"] for p in data["pipelines"]) or data.get("database") or "project")
    import html
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%(title)s</title>
<style>%(css)s</style></head>
<body>
<header id="top"><button id="menu" aria-label="tables" title="tables">&#9776;</button>
<a id="home" href="#/">deltapipe docs</a>
<div id="searchbox"><input id="search" type="search" placeholder="Search tables and columns  ( / )" autocomplete="off"
 aria-label="search tables and columns"><div id="results" role="listbox"></div></div></header>
<div id="layout"><nav id="nav"></nav><main id="main"><noscript>This page needs JavaScript to show the catalog.</noscript></main></div>
<script type="application/json" id="dp-data">%(data)s</script>
<script>%(js)s</script>
</body></html>
""" % {"title": html.escape(title), "css": _asset("site.css"), "data": payload, "js": _asset("site.js")}


def _reports(conn, run_ids: list[int]) -> dict[int, str]:
    from deltapipe.ops.report import render as render_report
    from deltapipe.pipeline.runner import run_record
    return {i: render_report(run_record(conn, i)) for i in run_ids}


def write_site(dsn: str | None, pipelines: list[str] | None, output: str | Path, runs: int = RUNS_SHOWN) -> dict:
    """Write DIR/index.html and DIR/runs/run-N.html (the run reports) for the pipelines (all when None)."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise DeltapipeError("%s is not a directory" % out, sqlstate="DP409",
                             hint="give -o a directory (it is created if missing)")
    conn = connect(dsn, autocommit=True, application_name="deltapipe docs")
    try:
        require_installed(conn)
        data = collect(conn, pipelines, runs)
        reports = _reports(conn, [r["id"] for r in data["runs"]])
    except psycopg.Error as e:
        raise from_db(e) from e
    finally:
        conn.close()
    page = render(data)
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
        (out / "index.html").write_text(page, encoding="utf-8")
        for i, text in reports.items():
            (out / "runs" / ("run-%d.html" % i)).write_text(text, encoding="utf-8")
    except OSError as e:
        raise DeltapipeError("cannot write the site into %s: %s" % (out, e.strerror), sqlstate="DP409",
                             hint="give -o a directory you can write") from e
    return {"dir": str(out), "index": str(out / "index.html"), "tables": len(data["tables"]),
            "columns": sum(len(t["columns"]) for t in data["tables"]), "runs": len(reports),
            "bytes": len(page.encode())}


# ------------------------------------------------------------------ serving it live


def page_for(dsn: str | None, pipelines: list[str] | None, path: str, runs: int = RUNS_SHOWN) -> tuple[int, str, str]:
    """(status, content type, body) of a GET of the served site; every request reads the catalog."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    html_type = "text/html; charset=utf-8"
    if path in ("/", "/index.html"):
        conn = connect(dsn, autocommit=True, application_name="deltapipe docs")
        try:
            require_installed(conn)
            return 200, html_type, render(collect(conn, pipelines, runs), live=True)
        except psycopg.Error as e:
            raise from_db(e) from e
        finally:
            conn.close()
    if path.startswith("/runs/run-") and path.endswith(".html") and path[10:-5].isdigit():
        run_id = int(path[10:-5])
        conn = connect(dsn, autocommit=True, application_name="deltapipe docs")
        try:
            require_installed(conn)
            if not conn.execute("SELECT 1 FROM deltapipe.run WHERE id = %s", (run_id,)).fetchone():
                return 404, "text/plain; charset=utf-8", "unknown run %d\n" % run_id
            return 200, html_type, _reports(conn, [run_id])[run_id]
        except psycopg.Error as e:
            raise from_db(e) from e
        finally:
            conn.close()
    if path == "/data.json":
        conn = connect(dsn, autocommit=True, application_name="deltapipe docs")
        try:
            require_installed(conn)
            return 200, "application/json", json.dumps(collect(conn, pipelines, runs), default=str)
        except psycopg.Error as e:
            raise from_db(e) from e
        finally:
            conn.close()
    return 404, "text/plain; charset=utf-8", "not found: try /\n"


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(dsn: str | None, pipelines: list[str] | None, port: int, host: str = "127.0.0.1",
                runs: int = RUNS_SHOWN) -> http.server.HTTPServer:
    """An HTTP server answering GET / (the site), /runs/run-N.html (run reports) and /data.json from the live
    catalog; a catalog that cannot be read answers 503 with one line."""
    page_for(dsn, pipelines, "/data.json", runs)  # fail now, with one clear line, on a bad database or pipeline name

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            try:
                status, ctype, body = page_for(dsn, pipelines, self.path, runs)
            except DeltapipeError as e:
                status, ctype, body = 503, "text/plain; charset=utf-8", "error: %s\n" % e.one_line()
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 - no access log on the terminal
            pass

    try:
        return _Server((host, port), Handler)
    except OSError as e:
        raise DeltapipeError("cannot listen on %s:%d: %s" % (host, port, e.strerror), sqlstate="DP406",
                             hint="pick another --serve PORT") from e


def serve(dsn: str | None, pipelines: list[str] | None, port: int, host: str = "127.0.0.1", runs: int = RUNS_SHOWN,
          on_ready=None) -> None:
    srv = make_server(dsn, pipelines, port, host, runs)
    if on_ready:
        on_ready("serving the docs on http://%s:%d/ (Ctrl-C stops)" % (host, srv.server_address[1]))
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


__all__ = ["collect", "render", "write_site", "page_for", "make_server", "serve"]
