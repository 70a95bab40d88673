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
SPLIT_MARK = "-- deltapipe: an input split from model "   # the first line of a split input's SQL


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


def _barrier(q: exp.Expression) -> bool:
    """A query whose rows are not a linear function of its inputs' rows: GROUP BY, aggregates, DISTINCT."""
    while isinstance(q, exp.Subquery):
        q = q.this
    if not isinstance(q, exp.Select):
        return False
    return bool(q.args.get("group") or q.args.get("distinct")
                or any(isinstance(p.unalias(), exp.AggFunc) for p in q.selects))


def _ctes_needed(body: exp.Expression, ctes: dict[str, exp.Expression]) -> list[str]:
    """The CTEs body reads, directly or through each other, in definition order."""
    need: set[str] = set()
    todo = [body]
    while todo:
        b = todo.pop()
        for t in b.find_all(exp.Table):
            if not t.args.get("db") and t.name in ctes and t.name not in need:
                need.add(t.name)
                todo.append(ctes[t.name])
    return [n for n in ctes if n in need]


def split_nested(sql: str, name: str, taken) -> tuple[list[tuple[str, str]], str] | None:
    """An aggregate over aggregates: `SELECT g, count(*) FROM (SELECT k, count(*) AS c ... GROUP BY k) x GROUP BY
    c` (a derived table or a CTE with GROUP BY, aggregates or DISTINCT, in the FROM of a query that aggregates
    again). Each such item becomes a model of its own (NAME__<alias>, maintained by the rule that fits it, its
    change the -old/+new rows of the groups it touched) and the query reads it as a table, so that its own
    aggregate is maintained from that change. Returns ([(input name, its SELECT)], the query's new SELECT), or
    None. taken(name) says whether a model or dataset name is in use."""
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except SqlglotError:
        return None
    if not isinstance(tree, exp.Select) or not (tree.args.get("group") or any(
            isinstance(a, exp.AggFunc) and a.find_ancestor(exp.Select) is tree for a in tree.find_all(exp.AggFunc))):
        return None
    w = tree.args.get("with_") or tree.args.get("with")
    if w is not None and w.args.get("recursive"):
        return None
    ctes = {c.alias: c.this for c in (w.expressions if w is not None else [])}
    items = []
    if tree.args.get("from_") is not None:
        items.append(tree.args["from_"].this)
    items += [j.this for j in tree.args.get("joins") or []]
    out = tree.copy()
    out_items = []
    if out.args.get("from_") is not None:
        out_items.append(out.args["from_"].this)
    out_items += [j.this for j in out.args.get("joins") or []]
    inputs: list[tuple[str, str]] = []
    made: dict[str, str] = {}
    for item, oitem in zip(items, out_items):
        if isinstance(item, exp.Subquery) and _barrier(item.this) and not isinstance(item.this, exp.Union):
            body, alias = item.this, item.alias_or_name
            cols = [c.name for c in (item.args.get("alias").columns if item.args.get("alias") else [])]
        elif isinstance(item, exp.Table) and not item.args.get("db") and item.name in ctes and _barrier(ctes[item.name]):
            body, alias = ctes[item.name], item.name
            cols = []
        else:
            continue
        if not isinstance(body, exp.Select) or not alias:
            return None
        iname = made.get(alias) or "%s__%s" % (name, alias.lower())
        if alias not in made:
            if len(iname) > 48 or not iname.replace("_", "a").isalnum() or taken(iname):
                return None
            inner = body.copy()
            if cols:   # the derived table's column aliases name its columns
                if len(cols) != len(inner.selects):
                    return None
                inner.set("expressions", [exp.alias_(p.unalias(), c, quoted=True) for p, c in zip(inner.selects, cols)])
            if any(_name(p) is None for p in inner.selects):
                return None
            need = _ctes_needed(inner, ctes)
            if need:
                inner.set("with_", exp.With(expressions=[exp.CTE(this=ctes[n].copy(), alias=exp.TableAlias(
                    this=exp.to_identifier(n))) for n in need]))
            inputs.append((iname, inner.sql("postgres", pretty=True)))
            made[alias] = iname
        t = exp.to_table(iname, dialect="postgres")
        t.set("alias", exp.TableAlias(this=exp.to_identifier(item.alias_or_name)))
        oitem.replace(t)
    if not inputs:
        return None
    # the CTEs the query still reads (others were only read by the split items)
    ow = out.args.get("with_") or out.args.get("with")
    if ow is not None:
        body = out.copy()
        body.set("with_", None)
        body.set("with", None)
        keep = _ctes_needed(body, {c.alias: c.this for c in ow.expressions})
        if keep:
            ow.set("expressions", [c for c in ow.expressions if c.alias in keep])
        else:
            out.set("with_", None)
            out.set("with", None)
    return inputs, out.sql("postgres", pretty=True)


HAVING_SUFFIX = "__groups"


def split_having(sql: str, input_table: str) -> tuple[str, str] | None:
    """`SELECT g, agg ... GROUP BY g HAVING cond`: the groups are kept by the aggregate rule in a model of their
    own (input_table: the SELECT without HAVING, plus a column for each aggregate the HAVING reads that the
    SELECT list does not), and the model is the filter `cond` over it (linear: a group appears or disappears
    when its new state crosses the condition). Returns (the input's SELECT, the model's SELECT) or None."""
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except SqlglotError:
        return None
    if not isinstance(tree, exp.Select) or not tree.args.get("having") or not tree.args.get("group"):
        return None
    for k in ("limit", "offset", "distinct", "order", "with_", "with", "locks"):
        if tree.args.get(k):
            return None
    names = [_name(p) for p in tree.selects]
    if any(x is None for x in names) or len(set(names)) != len(names):
        return None
    exprs = [p.unalias().sql("postgres") for p in tree.selects]
    inner = tree.copy()
    inner.set("having", None)
    cond = tree.args["having"].this.copy()
    extra = 0

    def col(n: str) -> exp.Column:
        return exp.column(exp.to_identifier(n, quoted=True))
    for node in list(cond.walk()):
        if node is not cond and node.find_ancestor(exp.AggFunc) is not None:
            continue
        if isinstance(node, exp.AggFunc):
            k = node.sql("postgres")
            if k in exprs:
                node.replace(col(names[exprs.index(k)]))
            else:
                extra += 1
                n = "__having_%d" % extra
                if n in names:
                    return None
                inner.select(exp.alias_(node.copy(), n, quoted=True), copy=False)
                node.replace(col(n))
    for node in list(cond.walk()):
        if isinstance(node, (exp.Subquery, exp.Exists, exp.Window)):
            return None
        if isinstance(node, exp.Column) and node.table:      # a group expression, by its name in the SELECT list
            k = node.sql("postgres")
            if k not in exprs:
                return None
            node.replace(col(names[exprs.index(k)]))
        elif isinstance(node, exp.Column) and node.name not in names and not node.name.startswith("__having_"):
            if node.sql("postgres") not in exprs:
                return None
            node.replace(col(names[exprs.index(node.sql("postgres"))]))
    outer = exp.select(*[col(n) for n in names]).from_(exp.to_table(input_table, dialect="postgres")).where(cond)
    return inner.sql("postgres", pretty=True), outer.sql("postgres", pretty=True)


SEMI_SUFFIX = "__semi"


def _aliases(s: exp.Select) -> set[str]:
    items = []
    if s.args.get("from_") is not None:
        items.append(s.args["from_"].this)
    items += [j.this for j in s.args.get("joins") or []]
    return {i.alias_or_name for i in items if isinstance(i, (exp.Table, exp.Subquery))}


def _inner_only(e: exp.Expression, inner: set[str]) -> bool:
    """e reads only the subquery's own FROM items (every column qualified by one of them)."""
    return all(c.table in inner for c in e.find_all(exp.Column))


def _conj(e: exp.Expression | None) -> list[exp.Expression]:
    if e is None:
        return []
    if isinstance(e, exp.Paren):
        return _conj(e.this)
    if isinstance(e, exp.And):
        return _conj(e.left) + _conj(e.right)
    return [e]


def _semi_body(sub: exp.Expression, outer: set[str], exists: bool = False):
    """A subquery that can be kept as the set of its distinct correlation values: a plain SELECT (no GROUP
    BY, HAVING, LIMIT, DISTINCT ON, window or aggregate, no CTE, no subquery of its own) whose every column is
    qualified. Returns (its FROM/JOINs as a SELECT with its inner-only conditions, [(inner expr, outer
    column)] of its correlating equalities), or None."""
    if not isinstance(sub, exp.Select) or sub.args.get("from_") is None:
        return None
    if exists and not sub.args.get("offset") and isinstance(sub.args.get("limit"), exp.Limit) and \
            isinstance(sub.args["limit"].expression, exp.Literal) and sub.args["limit"].expression.this not in ("0",):
        # EXISTS (SELECT 1 ... LIMIT 1): a LIMIT of at least one row does not change whether a row exists
        sub = sub.copy()
        sub.set("limit", None)
        sub.set("order", None)
    for k in ("group", "having", "limit", "offset", "order", "with_", "with", "locks", "qualify"):
        if sub.args.get(k):
            return None
    d = sub.args.get("distinct")
    if d is not None and d.args.get("on") is not None:
        return None
    if any(isinstance(x, (exp.AggFunc, exp.Window, exp.Subquery, exp.Exists)) for x in sub.walk() if x is not sub):
        return None
    inner = _aliases(sub)
    if not inner or inner & outer or any(not c.table for c in sub.find_all(exp.Column)):
        return None
    for j in sub.args.get("joins") or []:
        if j.args.get("on") is not None and not _inner_only(j.args["on"], inner):
            return None
    keep, eqs = [], []
    for c in _conj(sub.args.get("where").this if sub.args.get("where") else None):
        if _inner_only(c, inner):
            keep.append(c)
        elif isinstance(c, exp.EQ):
            a, b = c.this, c.expression
            if _inner_only(a, inner) and isinstance(b, exp.Column) and b.table in outer:
                eqs.append((a, b))
            elif _inner_only(b, inner) and isinstance(a, exp.Column) and a.table in outer:
                eqs.append((b, a))
            else:
                return None
        else:
            return None
    body = exp.Select()
    body.set("from_", sub.args["from_"].copy())
    if sub.args.get("joins"):
        body.set("joins", [j.copy() for j in sub.args["joins"]])
    if keep:
        body.set("where", exp.Where(this=exp.and_(*[k.copy() for k in keep])))
    return body, eqs


def split_semi(sql: str, name: str, taken) -> tuple[list[tuple[str, str]], str] | None:
    """EXISTS / NOT EXISTS / IN / NOT IN (SELECT ...) in a model's WHERE: the subquery becomes a model of its
    own, NAME__semi<k>, the DISTINCT values it correlates on (or, for IN, of its one column), kept by the
    DISTINCT rule with a hidden count per value, whose change holds only the values that appear or disappear
    (a count crossing zero); the WHERE then reads that model:
      EXISTS (SELECT .. FROM t WHERE t.a = o.x AND p)  ->  EXISTS (SELECT 1 FROM NAME__semi1 s WHERE s.k1 = o.x)
      o.x IN (SELECT t.a FROM t WHERE p)               ->  o.x IN (SELECT s.k1 FROM NAME__semi1 s)
    (NOT EXISTS and NOT IN alike: a NULL value is kept, so NOT IN's NULL semantics hold.) Returns
    ([(input name, its SELECT)], the model's new SELECT), or None when no subquery has that form (its columns
    must be qualified by their tables' names or aliases)."""
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except SqlglotError:
        return None
    if not isinstance(tree, exp.Select) or tree.args.get("where") is None:
        return None
    outer = _aliases(tree)
    w = tree.args.get("with_") or tree.args.get("with")
    if not outer or w is not None:
        return None
    out = tree.copy()
    inputs: list[tuple[str, str]] = []
    swaps: list[tuple[str, str]] = []    # (a subquery's SQL, the SQL that replaces it)
    for c in _conj(out.args["where"].this):
        e = c.this if isinstance(c, exp.Not) else c
        if isinstance(e, exp.Exists):
            sub = e.this
            r = _semi_body(sub, outer, exists=True)
            if r is None or not r[1]:
                continue
            body, eqs = r
            sel = [exp.alias_(a.copy(), "k%d" % (n + 1), quoted=True) for n, (a, _o) in enumerate(eqs)]
        elif isinstance(e, exp.In) and e.args.get("query") is not None:
            sub = e.args["query"].this if isinstance(e.args["query"], exp.Subquery) else e.args["query"]
            if not isinstance(sub, exp.Select) or len(sub.selects) != 1 or isinstance(sub.selects[0], exp.Star):
                continue
            r = _semi_body(sub, outer)
            if r is None or r[1] or not _inner_only(sub.selects[0], _aliases(sub)):
                continue
            body, eqs = r
            sel = [exp.alias_(sub.selects[0].unalias().copy(), "k1", quoted=True)]
        else:
            continue
        iname = "%s%s%d" % (name, SEMI_SUFFIX, len(inputs) + 1)
        if len(iname) > 48 or taken(iname):
            return None
        body.set("expressions", sel)
        body.set("distinct", exp.Distinct())
        inputs.append((iname, body.sql("postgres", pretty=True)))
        s = "_dp_semi%d" % len(inputs)
        if isinstance(e, exp.Exists):
            cond = exp.and_(*[exp.EQ(this=exp.column("k%d" % (n + 1), table=s, quoted=True), expression=o.copy())
                              for n, (_a, o) in enumerate(eqs)])
            new = exp.Exists(this=exp.select("1").from_(exp.to_table(iname, dialect="postgres").as_(s)).where(cond))
        else:
            new = e.copy()
            new.set("query", exp.Subquery(this=exp.select(exp.column("k1", table=s, quoted=True)).from_(
                exp.to_table(iname, dialect="postgres").as_(s))))
        swaps.append((sub.sql("postgres"), (new.this if isinstance(e, exp.Exists) else new.args["query"].this).sql("postgres")))
        e.replace(new)
    if not inputs:
        return None
    return inputs, _splice(sql, swaps) or out.sql("postgres", pretty=True)


def _splice(sql: str, swaps: list[tuple[str, str]]) -> str | None:
    """sql with each subquery of swaps (its SQL as sqlglot writes it) replaced in the text itself, each on as
    many lines as it took, so that the model's other lines keep their numbers (plan names constructs by
    line). None when a subquery is not found in the text."""
    from sqlglot.tokens import TokenType
    try:
        toks = sqlglot.tokenize(sql, read="postgres")
    except SqlglotError:
        return None
    spans = []
    for i, t in enumerate(toks):
        if (t.token_type == TokenType.L_PAREN and 0 < i < len(toks) - 1 and toks[i - 1].token_type in (TokenType.EXISTS, TokenType.IN)
                and toks[i + 1].token_type in (TokenType.SELECT, TokenType.WITH)):
            depth = 0
            for u in toks[i:]:
                depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(u.token_type, 0)
                if depth == 0:
                    spans.append((t.start, u.end))
                    break
    out, todo = [], list(swaps)
    last = 0
    for a, b in spans:
        if not todo:
            break
        try:
            got = sqlglot.parse_one(sql[a + 1:b], read="postgres").sql("postgres")
        except SqlglotError:
            continue
        if got != todo[0][0]:
            continue
        old = sql[a:b + 1]
        out.append(sql[last:a] + "(" + todo[0][1] + ")" + "\n" * old.count("\n"))
        last = b + 1
        todo.pop(0)
    if todo:
        return None
    return "".join(out) + sql[last:]


def _pg_name(p: exp.Expression) -> str | None:
    """The name PostgreSQL gives a projection (an unquoted name folded to lower case), when it has one."""
    ident = p.args.get("alias") if isinstance(p, exp.Alias) else p.this if isinstance(p, exp.Column) else None
    if isinstance(ident, exp.TableAlias):
        ident = ident.this
    if not isinstance(ident, exp.Identifier):
        return None
    return ident.name if ident.quoted else ident.name.lower()


def rewrite_setop(sql: str) -> str | None:
    """UNION, INTERSECT and EXCEPT (distinct) of two SELECTs as a GROUP BY over their UNION ALL, counting each
    row's copies on either side (per-row multiplicities):
      a UNION b      ->  SELECT c FROM (a UNION ALL b) GROUP BY c
      a INTERSECT b  ->  ... GROUP BY c HAVING sum(__l) > 0 AND sum(__r) > 0
      a EXCEPT b     ->  ... GROUP BY c HAVING sum(__l) > 0 AND sum(__r) = 0
    (GROUP BY puts NULLs together as the set operations do; the UNION ALL resolves the column types as they
    do). The GROUP BY is then kept by the aggregate rule (its HAVING split off: split_having), so a refresh
    follows the rows that changed. Returns the new SELECT, or None when the model is not such a query (ALL
    for INTERSECT and EXCEPT, nested set operations, ORDER BY or LIMIT on the result, a `*` or an unnamed
    expression in the first SELECT list)."""
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except SqlglotError:
        return None
    if not isinstance(tree, (exp.Union, exp.Intersect, exp.Except)) or not tree.args.get("distinct"):
        return None
    for k in ("order", "limit", "offset", "with_", "with"):
        if tree.args.get(k):
            return None
    a, b = tree.this, tree.expression
    if not isinstance(a, exp.Select) or not isinstance(b, exp.Select) or len(a.selects) != len(b.selects):
        return None
    if a.args.get("order") or b.args.get("order") or a.args.get("limit") or b.args.get("limit"):
        return None
    names = [_pg_name(p) for p in a.selects]
    if any(n is None for n in names) or len(set(names)) != len(names) or any(n in ("__l", "__r") for n in names):
        return None
    if any(isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star)) for p in b.selects):
        return None
    left, right = a.copy(), b.copy()
    left.set("expressions", [exp.alias_(p.unalias(), n, quoted=True) for p, n in zip(left.selects, names)])
    right.set("expressions", [exp.alias_(p.unalias(), n, quoted=True) for p, n in zip(right.selects, names)])
    if isinstance(tree, exp.Union):
        both = exp.union(left, right, distinct=False)
        having = None
    else:
        left.select(exp.alias_(exp.Literal.number(1), "__l", quoted=True), exp.alias_(exp.Literal.number(0), "__r", quoted=True),
                    copy=False)
        right.select(exp.alias_(exp.Literal.number(0), "__l", quoted=True), exp.alias_(exp.Literal.number(1), "__r", quoted=True),
                     copy=False)
        both = exp.union(left, right, distinct=False)
        r = "sum(\"__r\") > 0" if isinstance(tree, exp.Intersect) else "sum(\"__r\") = 0"
        having = sqlglot.parse_one("sum(\"__l\") > 0 AND " + r, read="postgres")
    cols = [exp.column(exp.to_identifier(n, quoted=True)) for n in names]
    out = exp.select(*cols).from_(exp.Subquery(this=both, alias=exp.TableAlias(this=exp.to_identifier("_dp_set")))).group_by(
        *[c.copy() for c in cols])
    if having is not None:
        out.set("having", exp.Having(this=having))
    return out.sql("postgres", pretty=True)
