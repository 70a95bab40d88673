"""Split a top-N model into a maintained input and the top N of it.

`SELECT ... ORDER BY o LIMIT n` cannot be maintained from the change of its input alone: a row leaving
the top N is replaced by one that was below it. Split in two, it can: the SELECT without ORDER BY/LIMIT
becomes a model of its own (``<name>__input``, maintained by whatever rule fits it: an aggregate's group
state, affected keys, ...), and the model itself becomes the first N rows of that table in the same
order, compared with its current N rows at each refresh (shape ``topn``): the refresh reads the maintained
input, not the tables under it.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

INPUT_SUFFIX = "__input"


def _name(p: exp.Expression) -> str | None:
    if isinstance(p, exp.Alias):
        return p.alias
    if isinstance(p, exp.Column) and not isinstance(p.this, exp.Star):
        return p.name
    return None


def split_topn(sql: str, input_table: str) -> tuple[str, str] | None:
    """(the input's SELECT, the model's SELECT over input_table) for a top-level `ORDER BY ... LIMIT n`
    SELECT, or None when the model is not of that shape or cannot be split (a `*` or an unnamed expression
    in its SELECT list, DISTINCT ON, a LIMIT that is not a number, FETCH ... WITH TIES, a locking clause)."""
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except SqlglotError:
        return None
    if not isinstance(tree, exp.Select) or not tree.args.get("limit") or not tree.args.get("order"):
        return None
    if tree.args.get("from_") is None or tree.args.get("locks"):
        return None
    distinct = tree.args.get("distinct")
    if distinct is not None and distinct.args.get("on") is not None:
        return None
    limit = tree.args["limit"]
    if isinstance(limit, exp.Fetch) and limit.args.get("with_ties"):
        return None
    n = limit.args.get("expression") if isinstance(limit, exp.Limit) else limit.args.get("count")
    offset = tree.args.get("offset")
    if not isinstance(n, exp.Literal) or n.is_string:
        return None
    if offset is not None and not (isinstance(offset.expression, exp.Literal) and not offset.expression.is_string):
        return None
    names = [_name(p) for p in tree.selects]
    if any(x is None for x in names) or len(set(names)) != len(names):
        return None
    exprs = [p.unalias().sql("postgres") for p in tree.selects]
    inner = tree.copy()
    for k in ("order", "limit", "offset"):
        inner.set(k, None)
    order = []
    hidden = 0
    for o in tree.args["order"].expressions:
        e = o.this
        if isinstance(e, exp.Literal) and not e.is_string and e.this.isdigit() and 1 <= int(e.this) <= len(names):
            col = names[int(e.this) - 1]
        elif isinstance(e, exp.Column) and not e.table and e.name in names:
            col = e.name          # an output column (PostgreSQL takes the output name first)
        elif e.sql("postgres") in exprs:
            col = names[exprs.index(e.sql("postgres"))]
        else:
            if any(isinstance(x, exp.AggFunc) for x in e.walk()) and not tree.args.get("group") \
                    and not any(isinstance(x.unalias(), exp.AggFunc) for x in tree.selects):
                return None
            # an ORDER BY expression not in the SELECT list: a column of the input
            hidden += 1
            col = "__order_%d" % hidden
            if col in names:
                return None
            inner.select(exp.alias_(e.copy(), col, quoted=True), copy=False)
        oo = o.copy()
        oo.set("this", exp.column(exp.to_identifier(col, quoted=True)))
        order.append(oo)
    outer = exp.select(*[exp.column(exp.to_identifier(c, quoted=True)) for c in names]).from_(
        exp.to_table(input_table, dialect="postgres"))
    outer.set("order", exp.Order(expressions=order))
    outer.set("limit", exp.Limit(expression=n.copy()))
    if offset is not None:
        outer.set("offset", offset.copy())
    return inner.sql("postgres", pretty=True), outer.sql("postgres", pretty=True)
