"""`deltapipe report RUN -o FILE.html`: one self-contained HTML page (inline SVG, CSS and JS, no
external assets) with the run's DAG and a Gantt timeline of its nodes, phases and row counts."""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path

import psycopg

from deltapipe.db import connect, require_installed
from deltapipe.errors import DeltapipeError, from_db

COLOURS = {"ran": "#2f7ed8", "incremental": "#2ca02c", "full": "#ff9f1c", "skipped": "#9aa0a6",
           "failed": "#d62728", "pending": "#e0e0e0", "running": "#8e44ad", "external": "#ffffff"}
PHASE_SHADES = ["#ffffff55", "#00000033", "#ffffff22", "#00000055", "#ffffff77", "#00000022"]


def classify(n: dict) -> str:
    """Colour class of a node run: failed, skipped, full (built or swapped whole), incremental (delta
    statements), ran (everything else that finished: loads, merges of a recompute), pending/running."""
    st = n.get("status")
    if st in ("failed", "skipped", "pending", "running"):
        return st
    strat = (n.get("strategy") or "").lower()
    if strat in ("create", "swap", "full", "rebuild"):
        return "full"
    if strat in ("delta", "incremental") or strat.startswith("incr"):
        return "incremental"
    return "ran"


def _layers(nodes: list[str], ups: dict[str, list[str]]) -> dict[str, int]:
    layer: dict[str, int] = {}

    def depth(n: str, seen: tuple = ()) -> int:
        if n in layer:
            return layer[n]
        if n in seen:
            return 0
        d = 0
        for u in ups.get(n, []):
            d = max(d, depth(u, seen + (n,)) + 1)
        layer[n] = d
        return d
    for n in nodes:
        depth(n)
    return layer


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def dag_svg(nodes: list[dict]) -> str:
    names = [n["node"] for n in nodes]
    by = {n["node"]: n for n in nodes}
    ups = {n["node"]: list(n.get("upstreams") or []) for n in nodes}
    externals = sorted({u for us in ups.values() for u in us if u not in by})
    allnames = names + externals
    layer = _layers(allnames, ups)
    cols: dict[int, list[str]] = {}
    for n in sorted(allnames, key=lambda x: (layer[x], x)):
        cols.setdefault(layer[n], []).append(n)
    W, H, GX, GY = 170, 38, 230, 58
    pos = {}
    for c, members in cols.items():
        for i, n in enumerate(members):
            pos[n] = (20 + c * GX, 20 + i * GY)
    width = 40 + (max(cols) + 1) * GX if cols else 200
    height = 40 + max(len(m) for m in cols.values()) * GY if cols else 80
    out = ['<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">'
           % (width, height, width, height),
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>']
    for n in names:
        for u in ups[n]:
            if u not in pos:
                continue
            x1, y1 = pos[u][0] + W, pos[u][1] + H / 2
            x2, y2 = pos[n][0], pos[n][1] + H / 2
            mx = (x1 + x2) / 2
            out.append('<path class="edge" data-from="%s" data-to="%s" d="M %.0f %.0f C %.0f %.0f, %.0f %.0f, %.0f %.0f" '
                       'fill="none" stroke="#555" stroke-width="1.5" marker-end="url(#arrow)"/>'
                       % (_e(u), _e(n), x1, y1, mx, y1, mx, y2, x2 - 2, y2))
    for n in allnames:
        x, y = pos[n]
        if n in by:
            cls = classify(by[n])
            fill, text, dash = COLOURS[cls], "#fff" if cls not in ("pending", "skipped") else "#222", ""
            tip = "%s (%s, %s)" % (n, by[n].get("node_kind"), cls)
        else:
            cls, fill, text, dash = "external", COLOURS["external"], "#333", ' stroke-dasharray="4 3"'
            tip = "%s (external table)" % n
        label = n if len(n) <= 22 else n[:21] + "\u2026"
        out.append('<g class="node %s" data-node="%s"><title>%s</title>'
                   '<rect x="%d" y="%d" width="%d" height="%d" rx="7" fill="%s" stroke="#333"%s/>'
                   '<text x="%d" y="%d" fill="%s" text-anchor="middle" dominant-baseline="middle">%s</text></g>'
                   % (cls, _e(n), _e(tip), x, y, W, H, fill, dash, x + W // 2, y + H // 2 + 1, text, _e(label)))
    out.append("</svg>")
    return "\n".join(out)


def _phases(n: dict) -> list[tuple[str, float]]:
    ph = n.get("phases") or {}
    out = []
    for k, v in ph.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if f > 0 and not k.endswith("_runs"):
            out.append((k, f))
    return out


def gantt_svg(nodes: list[dict]) -> str:
    timed = [n for n in nodes if n.get("started_at")]
    if not timed:
        return '<p class="empty">No node of this run started.</p>'
    t0 = min(n["started_at"] for n in timed)
    t1 = max((n.get("finished_at") or n["started_at"]) for n in timed)
    span = max((t1 - t0).total_seconds(), 1e-3)
    LW, BW, RH = 180, 620, 30
    width, height = LW + BW + 220, 40 + RH * len(timed)
    out = ['<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">'
           % (width, height, width, height)]
    for i in range(6):  # time axis
        x = LW + BW * i / 5
        out.append('<line x1="%.1f" y1="18" x2="%.1f" y2="%d" stroke="#ddd"/>'
                   '<text x="%.1f" y="12" class="axis" text-anchor="middle">%.3fs</text>'
                   % (x, x, height, x, span * i / 5))
    for row, n in enumerate(sorted(timed, key=lambda x: (x["started_at"], x["id"]))):
        y = 24 + row * RH
        s = (n["started_at"] - t0).total_seconds()
        e = ((n.get("finished_at") or n["started_at"]) - t0).total_seconds()
        x = LW + BW * s / span
        w = max(BW * (e - s) / span, 2)
        cls = classify(n)
        counts = "read %d  +%d ~%d -%d  rejected %d" % (n.get("rows_in") or 0, n.get("inserted") or 0,
                                                        n.get("updated") or 0, n.get("deleted") or 0,
                                                        n.get("rejected") or 0)
        tip = "%s: %s, %.3fs, %s%s" % (n["node"], cls, e - s, counts,
                                      ("; " + n["skip_reason"]) if n.get("skip_reason") else
                                      ("; " + n["error"]) if n.get("error") else "")
        out.append('<g class="bar %s" data-node="%s"><title>%s</title>' % (cls, _e(n["node"]), _e(tip)))
        out.append('<text x="%d" y="%d" class="label" text-anchor="end">%s</text>' % (LW - 8, y + 15, _e(n["node"])))
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="20" rx="3" fill="%s" stroke="#333" stroke-width="0.5"/>'
                   % (x, y + 2, w, COLOURS[cls]))
        ph = _phases(n)
        total = sum(v for _k, v in ph)
        if ph and total > 0:
            px = x
            for j, (k, v) in enumerate(ph):
                pw = w * v / total
                out.append('<rect class="phase" x="%.1f" y="%d" width="%.1f" height="6" fill="%s"><title>%s %.1f ms</title></rect>'
                           % (px, y + 16, pw, PHASE_SHADES[j % len(PHASE_SHADES)], _e(k), v))
                px += pw
        out.append('<text x="%.1f" y="%d" class="counts">%s</text></g>' % (x + w + 6, y + 15, _e(counts)))
    out.append("</svg>")
    return "\n".join(out)


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.meta{color:#555;font-size:13px} .card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px;overflow-x:auto}
svg text{font-size:12px} .axis{fill:#777;font-size:10px} .counts{fill:#444;font-size:11px}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:4px;vertical-align:-1px;border:1px solid #333}
table{border-collapse:collapse;font-size:12px;background:#fff} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,th:first-child,td.l{text-align:left} .hl rect{stroke:#000;stroke-width:3}
.status-failed{color:#d62728;font-weight:bold}
"""

JS = """
document.querySelectorAll('[data-node]').forEach(function(el){
  el.addEventListener('mouseenter',function(){var n=el.getAttribute('data-node');
    document.querySelectorAll('[data-node]').forEach(function(o){if(o.getAttribute('data-node')===n)o.classList.add('hl');});});
  el.addEventListener('mouseleave',function(){document.querySelectorAll('.hl').forEach(function(o){o.classList.remove('hl');});});
});
"""


def render(run: dict) -> str:
    nodes = run["nodes"]
    started = run.get("started_at")
    finished = run.get("finished_at")
    dur = (finished - started).total_seconds() if started and finished else None
    title = "deltapipe run %s%s" % (run["id"], (" \u2014 pipeline %s" % run["pipeline"]) if run.get("pipeline") else "")
    legend = "".join('<span><i style="background:%s"></i>%s</span>' % (COLOURS[k], k)
                     for k in ("ran", "incremental", "full", "skipped", "failed"))
    rows = []
    for n in nodes:
        d = (n["finished_at"] - n["started_at"]).total_seconds() if n.get("finished_at") and n.get("started_at") else 0
        rows.append("<tr><td>%s</td><td class='l'>%s</td><td class='l status-%s'>%s</td><td>%.3f</td><td>%d</td>"
                    "<td>%d</td><td>%d</td><td>%d</td><td>%d</td><td class='l'>%s</td></tr>"
                    % (_e(n["node"]), _e(n.get("node_kind")), _e(n["status"]), _e(classify(n)), d,
                       n.get("rows_in") or 0, n.get("inserted") or 0, n.get("updated") or 0, n.get("deleted") or 0,
                       n.get("rejected") or 0, _e(n.get("skip_reason") or n.get("error") or n.get("strategy") or "")))
    data = json.dumps({"run": run["id"], "nodes": [n["node"] for n in nodes]})
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%(title)s</title><style>%(css)s</style></head>
<body>
<h1>%(title)s</h1>
<div class="meta">status <b>%(status)s</b> &middot; started %(started)s &middot; %(dur)s &middot; %(n)d nodes%(err)s</div>
<div class="legend" style="margin-top:8px">%(legend)s</div>
<h2>DAG</h2><div class="card">%(dag)s</div>
<h2>Timeline</h2><div class="card">%(gantt)s</div>
<h2>Nodes</h2><div class="card"><table><tr><th>node</th><th>kind</th><th>status</th><th>seconds</th><th>read</th>
<th>+ins</th><th>~upd</th><th>-del</th><th>rejected</th><th>note</th></tr>%(rows)s</table></div>
<script type="application/json" id="run-data">%(data)s</script>
<script>%(js)s</script>
</body></html>
""" % {"title": _e(title), "css": CSS, "status": _e(run["status"]),
       "started": _e(started.strftime("%Y-%m-%d %H:%M:%S") if isinstance(started, datetime) else started),
       "dur": "%.2fs" % dur if dur is not None else "not finished", "n": len(nodes),
       "err": (" &middot; <span class='status-failed'>%s</span>" % _e(run["error"])) if run.get("error") else "",
       "legend": legend, "dag": dag_svg(nodes), "gantt": gantt_svg(nodes), "rows": "\n".join(rows),
       "data": data.replace("</", "<\\/"), "js": JS}


def write_report(dsn: str | None, run_id: int, output: str | Path) -> dict:
    from deltapipe.pipeline.runner import run_record
    conn = connect(dsn, autocommit=True, application_name="deltapipe report")
    try:
        require_installed(conn)
        if not conn.execute("SELECT 1 FROM deltapipe.run WHERE id = %s", (run_id,)).fetchone():
            raise DeltapipeError("unknown run %s" % run_id, sqlstate="DP405", hint="list runs with `deltapipe runs`")
        run = run_record(conn, run_id)
    except psycopg.Error as e:
        raise from_db(e) from e
    finally:
        conn.close()
    page = render(run)
    out = Path(output)
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as e:
        raise DeltapipeError("cannot write %s: %s" % (out, e.strerror)) from e
    return {"file": str(out), "nodes": len(run["nodes"]), "bytes": len(page.encode())}
