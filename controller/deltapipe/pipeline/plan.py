"""Plan: what a run would do and why; shape changes of models."""

from __future__ import annotations


import psycopg

from deltapipe.errors import from_db
from deltapipe.pipeline.model import Model, Pipeline
from deltapipe.pipeline.deps import _q, topo_order
from deltapipe.pipeline.deploy import compile_pipeline, source_state


def plan(conn: psycopg.Connection, p: Pipeline, full_refresh: bool = False) -> list[dict]:
    """Which nodes would run and why, without running anything."""
    out: list[dict] = []
    will_change: set[str] = set()
    reshaped: set[str] = set()   # models whose output columns change (or that are rebuilt because of one)
    compiled = None
    for s in p.sources.values():
        action, why = source_state(conn, p, s)
        out.append({"node": s.dataset, "kind": "source", "action": action, "reason": why})
        if action == "load":
            will_change.add(s.dataset)
    for name in topo_order(p):
        m = p.models[name]
        table_exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", ("%s.%s" % (_q(p.schema), _q(name)),)).fetchone()[0]
        last = conn.execute("""SELECT n.fingerprint, n.inputs, n.run_id FROM deltapipe.node_run n
                                 JOIN deltapipe.run r ON r.id = n.run_id
                                WHERE r.pipeline = %s AND n.node = %s AND n.node_kind = 'model' AND n.status = 'done'
                                  AND r.status <> 'rolled_back'
                                ORDER BY n.id DESC LIMIT 1""", (p.name, name)).fetchone()
        changed_ups = sorted(u for u in m.upstreams if u in will_change)
        if full_refresh:
            action, why = "run", "full refresh"
        elif last is None or not table_exists:
            action, why = "run", "new" if last is None else "table missing"
        elif last[0] != m.fingerprint:
            action, why = "run", "SQL changed"
        elif changed_ups:
            action, why = "run", "input changed: %s" % ", ".join(changed_ups)
        else:
            deployed = conn.execute("SELECT fingerprint FROM deltapipe.model WHERE pipeline = %s AND name = %s",
                                    (p.name, name)).fetchone()
            inputs = None
            if deployed:
                inputs = conn.execute("SELECT deltapipe._node_inputs(%s, %s)", (p.name, name)).fetchone()[0]
            if inputs is not None and inputs == last[1] and set(inputs) == set(m.upstreams):
                action, why = "skip", "unchanged since run %s" % last[2]
            else:
                diff = sorted(k for k in set(m.upstreams) | set(last[1] or {})
                              if (inputs or {}).get(k) != (last[1] or {}).get(k)) if inputs is not None else []
                action, why = "run", "input changed: %s" % (", ".join(diff) or "dependencies changed")
        shape = shape_change(conn, p, m) if table_exists else None
        affected_by = sorted(u for u in m.upstreams if u in reshaped)
        if shape and shape.get("changes"):
            reshaped.add(name)
            if action == "skip":
                action, why = "run", "output columns change"
        if affected_by:
            reshaped.add(name)  # rebuilt in full: its own downstream is affected too
            if action == "skip":
                action, why = "run", "upstream changes shape: %s" % ", ".join(affected_by)
        if action == "run":
            will_change.add(name)
        if compiled is None:  # once for the whole plan: deployed programs are reused, the others compiled
            compiled = compile_pipeline(conn, p)
        c = compiled[name]
        refresh = ("incremental (%s)" % _shape_label(c)) if c.incremental else "full: %s" % c.why_full
        row = {"node": name, "kind": "model", "action": action, "reason": why, "refresh": refresh,
               "incremental": bool(c.incremental), "why_full": c.why_full, "key": c.key,
               "key_inferred": c.key_inferred, "operators": operators(c)}
        if shape:
            row["shape"] = shape
        if affected_by:
            row["affected_by"] = affected_by
        if m.audits:
            row["audits"] = ["%s%s" % (a["name"], "" if a["blocking"] else " [warn]") for a in m.audits]
        out.append(row)
    return out


def _shape_label(c) -> str:
    if c.shape == "keys":
        return "affected keys on %s" % c.program["restrict_col"]
    if c.shape == "topn":
        return "top-N of %s" % c.program["input"]
    if c.shape == "dedupe":
        return "first row per %s" % ", ".join(c.program["partition"])
    return c.shape


def operators(c) -> list[str]:
    """How each operator of a compiled model is maintained (plan lines)."""
    if not c.incremental:
        return []
    if c.shape in ("linear", "aggregate", "distinct") and (c.program or {}).get("guards"):
        return _operators(c) + list(c.program.get("operators", []))
    return _operators(c)


def _operators(c) -> list[str]:
    if c.shape == "keys":
        lines = [x for x in c.program.get("operators", []) if not (x.startswith("FROM ") and ": restricted by " in x)]
        return lines + ["changes traced to %s; the rows of the affected %s are recomputed and diffed"
                        % (c.program["restrict_col"], c.program["restrict_col"])]
    if c.shape in ("topn", "dedupe"):
        return list(c.program.get("operators", []))
    if c.shape == "linear":
        return ["filter/project/UNION ALL: the change passes through; inner joins: one delta term per changed input"]
    if c.shape == "aggregate":
        spec = c.agg_spec or {}
        fns = sorted({a["fn"].replace("count_star", "count(*)") for a in spec.get("aggs", []) if a["fn"] != "expr"})
        g = ", ".join(x["col"] for x in spec.get("groups", []))
        if spec.get("nogroup"):
            out = ["aggregate without GROUP BY: one row, its state (count, sums) updated from the change: %s"
                   % ", ".join(fns)]
        else:
            out = ["GROUP BY %s: group state (count, sums) updated from the change: %s" % (g, ", ".join(fns))]
        exprs = [a["col"] for a in spec.get("aggs", []) if a["fn"] == "expr"]
        if exprs:
            out.append("expression over aggregates (%s): computed from the maintained state" % ", ".join(exprs))
        if any(f in ("min", "max") for f in fns):
            out.append("min/max: groups that lost their extreme are recomputed")
        return out
    if c.shape == "distinct":
        return ["DISTINCT: a count per row; rows appear and disappear when it crosses zero"]
    return []


def _visible_columns(conn, regclass: str) -> list[tuple[str, str]]:
    return [tuple(r) for r in conn.execute(
        """SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
            WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
              AND a.attname NOT LIKE '\\_dp\\_%%' ORDER BY a.attnum""", (regclass,)).fetchall()]


def shape_change(conn: psycopg.Connection, p: Pipeline, m: Model) -> dict | None:
    """Compare a model's output columns (its SELECT against the tables as they are now) with its deployed table:
    {"changes": ["+col type", "-col", "col: old -> new"], "columns": [...]} or {"error": why}."""
    target = "%s.%s" % (_q(p.schema), _q(m.name))
    try:
        old = _visible_columns(conn, target)
        with conn.transaction(force_rollback=True):
            conn.execute("SELECT set_config('search_path', %s, true)", ("%s, public" % _q(p.schema),))
            conn.execute("CREATE TEMP TABLE _dp_plan_shape AS SELECT * FROM (\n" + m.sql + "\n) _dp_q LIMIT 0")
            new = _visible_columns(conn, "pg_temp._dp_plan_shape")
    except psycopg.Error as e:
        return {"error": from_db(e).message}
    changes = []
    oldd, newd = dict(old), dict(new)
    for c, t in new:
        if c not in oldd:
            changes.append("+%s %s" % (c, t))
        elif oldd[c] != t:
            changes.append("%s: %s -> %s" % (c, oldd[c], t))
    changes += ["-%s" % c for c, _t in old if c not in newd]
    if not changes and [c for c, _ in old] != [c for c, _ in new]:
        changes.append("column order: %s" % ", ".join(c for c, _ in new))
    return {"changes": changes, "columns": [c for c, _ in new]}


# ------------------------------------------------------------------ dag rendering
