"""The dedupe rule: one row per key, the first by an order (shape "dedupe").

    SELECT cols FROM (SELECT ..., row_number() OVER (PARTITION BY k ORDER BY o) AS rn FROM x ...) s WHERE rn = 1
    SELECT DISTINCT ON (k) cols FROM x ... ORDER BY k, o

keyed by k, is maintained per key from the change of its input (the SELECT under the window, maintained by
the linear rule), with the model's table as its state (the current first row of every key):
- a key whose first row was removed (a removed row equal to the table's row of the key) is recomputed from the
  input, restricted to those keys;
- any other key with rows added keeps the first of its current row and the rows added (DISTINCT ON by the
  same order);
- a key with only other rows removed is unchanged.
So a refresh reads the input again only for the keys whose first row left (for a change spread evenly, one
in as many as each key has rows), not for every key the change touches (the affected-key rule).
The ORDER BY must read only columns of the model's output (the current first row is compared with the rows
added through them), and the keys must be the PARTITION BY (DISTINCT ON) columns, projected under their
names. Ties in the order pick one row, as row_number() does: give the order a tie-breaker (a unique column)
for a result that does not depend on the plan.
"""

from __future__ import annotations

from sqlglot import exp

from deltapipe.incremental.errors import NotIncremental


def _is_col(e: exp.Expression) -> bool:
    return isinstance(e, exp.Column) and not isinstance(e.this, exp.Star)


def _window_form(q: exp.Select, names: list[str], ctes: dict):
    """(inner SELECT with its window, the window's output name, the partition expressions, the order, the
    inner SELECT's alias (None: DISTINCT ON)) for either form, or None."""
    if not isinstance(q, exp.Select) or q.args.get("joins") or q.args.get("group") or q.args.get("having"):
        return None
    for k in ("limit", "offset", "locks", "qualify"):
        if q.args.get(k):
            return None
    d = q.args.get("distinct")
    if d is not None and d.args.get("on") is not None:
        # DISTINCT ON (k) ... ORDER BY k, o: the same as row_number() over (partition by k order by o) = 1
        ons = list(d.args["on"].expressions)
        order = list(q.args["order"].expressions) if q.args.get("order") else []
        if len(order) < len(ons) or any(order[i].this.sql("postgres") != ons[i].sql("postgres") for i in range(len(ons))):
            return None
        # (DISTINCT ON and ORDER BY may name an output column: its expression, for the window)
        named = {p.alias_or_name: p.unalias() for p in q.selects}

        def expr_of(e: exp.Expression) -> exp.Expression:
            if _is_col(e) and not e.table and e.name in named:
                return named[e.name].copy()
            return e.copy()
        ons = [expr_of(o) for o in ons]
        order = [o.copy() for o in order]
        for o in order:
            o.set("this", expr_of(o.this))
        inner = q.copy()
        inner.set("distinct", None)
        inner.set("order", None)
        w = exp.Window(this=exp.RowNumber(), partition_by=[o.copy() for o in ons],
                       order=exp.Order(expressions=[o.copy() for o in order[len(ons):]]))
        inner.select(exp.alias_(w, "_dp_rn", quoted=True), copy=False)
        return inner, "_dp_rn", ons, order[len(ons):], None
    if d is not None or q.args.get("order"):
        return None
    src = q.args.get("from_").this if q.args.get("from_") else None
    where = q.args.get("where")
    if isinstance(src, exp.Table) and not src.args.get("db") and src.name in ctes:
        body = ctes[src.name]       # a CTE: `with ranked as (select ..., row_number() ...) select ... where rn = 1`
    elif isinstance(src, exp.Subquery):
        body = src.this
    else:
        return None
    if not isinstance(body, exp.Select) or where is None:
        return None
    c = where.this
    if not isinstance(c, exp.EQ):
        return None
    col, one = (c.this, c.expression) if _is_col(c.this) else (c.expression, c.this)
    if not _is_col(col) or not (isinstance(one, exp.Literal) and not one.is_string and one.this == "1"):
        return None
    inner = body
    wins = [p for p in inner.selects if isinstance(p.unalias(), exp.Window)]
    if len(wins) != 1 or wins[0].alias_or_name != col.name or list(inner.find_all(exp.Window)) != [wins[0].unalias()]:
        return None
    w = wins[0].unalias()
    if not isinstance(w.this, exp.RowNumber) or not w.args.get("partition_by") or w.args.get("spec"):
        return None
    order = list(w.args["order"].expressions) if w.args.get("order") else []
    return inner.copy(), col.name, list(w.args["partition_by"]), order, src.alias_or_name


def compile_dedupe(q: exp.Select, names: list[str], ctx, key: list[str] | None):
    """The dedupe rule's parts for a model of that form: {"delta_sql", "program"}, or None when it does not apply."""
    if not key:
        return None
    form = _window_form(q, names, ctx.ctes)
    if form is None:
        return None
    inner, rn, parts, order, alias = form
    # the inner SELECT's output name of each of its expressions
    by_expr = {}
    for p in inner.selects:
        if p.alias_or_name != rn:
            by_expr.setdefault(p.unalias().sql("postgres"), p.alias_or_name)

    def out_name(e: exp.Expression) -> str | None:
        """The model's output column that e (an expression of the inner SELECT) is, if any."""
        n = by_expr.get(e.sql("postgres"))
        if n is None:
            return None
        if alias is None:     # DISTINCT ON: the model's SELECT list is the inner one
            return n if n in names else None
        for p, name in zip(q.selects, names):
            u = p.unalias()
            if _is_col(u) and u.name == n:
                return name
        return None
    pnames = [out_name(p) for p in parts]
    if any(n is None for n in pnames) or set(pnames) != set(key):
        return None
    # the order's columns: output columns, or hidden columns of the table (_dp_ob<k>: a tie-breaker such as
    # an id the model does not show), so that the table's row of a key can be compared with rows added
    onames, hidden = [], []
    for o in order:
        n = out_name(o.this)
        if n is None:
            if o.this.find(exp.Window, exp.AggFunc, exp.Subquery) is not None:
                return None
            n = "_dp_ob%d" % (len(hidden) + 1)
            hidden.append((n, o.this.copy()))
        oc = o.copy()
        oc.set("this", exp.column(exp.to_identifier(n, quoted=True)))
        onames.append(oc.sql("postgres"))
    if alias is not None:
        # the model's SELECT list: columns of the inner SELECT, each once
        for p in q.selects:
            if not _is_col(p.unalias()) or p.unalias().name == rn:
                return None
    # the change of the SELECT under the window (maintained as a linear query), in the model's columns
    for n, e in hidden:
        inner.select(exp.alias_(e.copy(), n, quoted=True), copy=False)
    lin = inner.copy()
    lin.set("expressions", [p.copy() for p in inner.selects if p.alias_or_name != rn])
    try:
        delta = ctx.delta(lin)
    except NotIncremental:
        return None
    if alias is None:
        proj = ", ".join('"_dp_q".%s AS %s' % (exp.to_identifier(n, quoted=True).sql("postgres"),
                                              exp.to_identifier(n, quoted=True).sql("postgres")) for n in names)
    else:
        proj = ", ".join('"_dp_q".%s AS %s' % (exp.to_identifier(p.unalias().name, quoted=True).sql("postgres"),
                                              exp.to_identifier(n, quoted=True).sql("postgres"))
                         for p, n in zip(q.selects, names))
    hid = "".join(', "_dp_q".%s' % exp.to_identifier(n, quoted=True).sql("postgres") for n, _e in hidden)
    delta_sql = 'SELECT %s%s, "_dp_q"."_dp_w" FROM (%s) AS "_dp_q"' % (proj, hid, delta.sql("postgres"))
    # the recompute of the keys whose first row left: the model's query over its inputs now, restricted to
    # them inside (before the window: whole partitions)
    kcols = ", ".join(exp.to_identifier(n, quoted=True).sql("postgres") for n in pnames)
    rest = ctx.resolve_all(inner.copy())
    cond = exp.In(this=exp.Tuple(expressions=[p.copy() for p in parts]) if len(parts) > 1 else parts[0].copy(),
                  query=exp.Subquery(this=exp.select(*[exp.column(exp.to_identifier(n, quoted=True)) for n in pnames])
                                     .from_(exp.to_table("pg_temp._dp_k"))))
    rest.where(cond, copy=False)
    outer = ", ".join('"_dp_r".%s AS %s' % (exp.to_identifier(by_expr.get(e.sql("postgres")) if alias is None
                                                              else q.selects[i].unalias().name, quoted=True).sql("postgres"),
                                            exp.to_identifier(n, quoted=True).sql("postgres"))
                      for i, (e, n) in enumerate(zip([p.unalias() for p in q.selects], names)))
    outer += "".join(', "_dp_r".%s' % exp.to_identifier(n, quoted=True).sql("postgres") for n, _e in hidden)
    recompute = 'SELECT %s FROM (%s) AS "_dp_r" WHERE "_dp_r".%s = 1' % (
        outer, rest.sql("postgres"), exp.to_identifier(rn, quoted=True).sql("postgres"))
    # the table is built with the hidden columns too (state_sql: the same query over all keys)
    state = None
    if hidden:
        whole = ctx.resolve_all(inner.copy())
        state = 'SELECT %s FROM (%s) AS "_dp_r" WHERE "_dp_r".%s = 1' % (
            outer, whole.sql("postgres"), exp.to_identifier(rn, quoted=True).sql("postgres"))
    # the partition columns of a table read directly are indexed (the recompute probes them)
    indexes = []
    src = inner.args.get("from_").this if inner.args.get("from_") else None
    if isinstance(src, exp.Table) and not inner.args.get("joins"):
        r = ctx.resolve(src)
        if r is not None:
            for p in parts:
                if _is_col(p) and p.table in ("", src.alias_or_name):
                    indexes.append({"table": r[1], "column": p.name})
                    break
    # one table read once: its change holds each row once (no +r/-r pairs to net)
    net = not (isinstance(src, exp.Table) and not inner.args.get("joins") and len(ctx.inputs) == 1
               and not any(isinstance(x, (exp.Subquery, exp.Exists)) for x in inner.walk()))
    how = "DISTINCT ON" if alias is None else "row_number() = 1"
    return {"delta_sql": delta_sql, "state_sql": state, "hidden": [n for n, _e in hidden], "program": {
        "partition": pnames, "order": ", ".join(onames), "net": net, "recompute_sql": recompute, "indexes": indexes,
        "operators": ["%s per %s: the first row of each key kept from the change (the rows added against the "
                      "key's row); a key whose row left is recomputed from the input" % (how, ", ".join(pnames))]}}
