"""Keys a query determines, so that a model needs no `-- key:` header.

A set of output columns is a key when no two output rows can share its values:
- an input table's key (a dataset's key, a model's key), carried through filters and projections;
- the GROUP BY columns of an aggregate, all columns of a SELECT DISTINCT;
- the preserved side's key through a join that cannot repeat its rows: an INNER or LEFT JOIN whose
  ON equates a whole key of the joined item to columns of the items before it.
A model's primary key must also hold no NULL: a key is used only when each of its columns comes
from an input key column (NOT NULL) on a side that is never null-padded.
"""

from __future__ import annotations

from sqlglot import exp

from deltapipe.incremental.affected import _colkey, _conjuncts, _own, inline_ctes


def infer_keys(q: exp.Expression, ctx, upstream_keys: dict[str, list[str] | None]) -> tuple[list[list[str]], set[str]]:
    """(keys, not-null columns) of query q's output; keys as lists of output column names."""
    try:
        return _query(inline_ctes(q), ctx, upstream_keys)
    except Exception:  # noqa: BLE001 - inference is best effort: no key is always safe
        return [], set()


def choose_key(q: exp.Expression, ctx, upstream_keys) -> list[str] | None:
    keys, notnull = infer_keys(q, ctx, upstream_keys)
    for k in sorted(keys, key=len):
        if k and all(c in notnull for c in k):
            return k
    return None


def _query(q, ctx, ukeys) -> tuple[list[list[str]], set[str]]:
    if isinstance(q, exp.Subquery):
        return _query(q.this, ctx, ukeys)
    if isinstance(q, exp.Select):
        return _select(q, ctx, ukeys)
    if isinstance(q, exp.SetOperation):
        # UNION, INTERSECT, EXCEPT (not ALL) return distinct rows: all their columns are a key
        # (UNION ALL repeats rows: none)
        if not q.args.get("distinct"):
            return [], set()
        names = _names(q)
        ln = _positions(q.left, ctx, ukeys)
        rn = _positions(q.right, ctx, ukeys)
        if isinstance(q, exp.Union):
            nn = ln & rn
        elif isinstance(q, exp.Intersect):
            nn = ln | rn
        else:
            nn = ln
        return [names], {names[i] for i in nn if i < len(names)}
    return [], set()


def _names(q) -> list[str]:
    while isinstance(q, exp.Subquery):
        q = q.this
    if isinstance(q, exp.SetOperation):
        return _names(q.left)
    return [p.alias_or_name for p in q.selects]


def _positions(q, ctx, ukeys) -> set[int]:
    """Positions of the output columns of q that are never NULL."""
    _k, nn = _query(q, ctx, ukeys)
    return {i for i, n in enumerate(_names(q)) if n in nn}


def _item(item, ctx, ukeys) -> tuple[list[list[str]], set[str]]:
    if isinstance(item, exp.Table):
        r = ctx.resolve(item)
        if r is None:
            return [], set()
        k = ukeys.get(r[0])
        return ([list(k)] if k else []), set(k or [])
    if isinstance(item, exp.Subquery):
        return _query(item.this, ctx, ukeys)
    return [], set()


def _select(s: exp.Select, ctx, ukeys) -> tuple[list[list[str]], set[str]]:
    frm = s.args.get("from_") or s.args.get("from")
    if frm is None:
        return [], set()
    a0 = frm.this.alias_or_name
    k0, n0 = _item(frm.this, ctx, ukeys)
    keys = [[(a0, c) for c in k] for k in k0]          # keys as (alias, column) lists
    notnull = {(a0, c) for c in n0}
    seen = [a0]
    for j in s.args.get("joins") or []:
        a = j.this.alias_or_name
        ky, ny = _item(j.this, ctx, ukeys)
        side = (j.args.get("side") or "").upper()
        kind = (j.args.get("kind") or "").upper()
        eq = {}
        for c in _conjuncts(j.args.get("on")):
            if isinstance(c, exp.EQ):
                x, y = _colkey(c.left), _colkey(c.right)
                for mine, other in ((x, y), (y, x)):
                    if mine and other and mine[0] == a and other[0] in seen:
                        eq[mine[1]] = other
        unique_per_left = any(k and all(col in eq for col in k) for k in ky)
        # the items before, matched by a whole key of theirs: at most one of their rows per row of a
        left_cols = {v: k for k, v in eq.items()}
        unique_per_right = any(k and all(c in left_cols for c in k) for k in keys)
        if side in ("", "LEFT") and kind in ("", "INNER", "OUTER") and unique_per_left:
            if side == "":
                notnull |= {(a, c) for c in ny}
        elif side == "RIGHT" and kind in ("", "OUTER") and unique_per_right:
            keys = [[(a, c) for c in k] for k in ky]   # the right side is preserved: its key
            notnull = {(a, c) for c in ny}
            seen.append(a)
            continue
        else:
            keys = []
        if side in ("RIGHT", "FULL"):
            notnull = set()
        seen.append(a)
    # WHERE filters NULLs out: col IS NOT NULL, col = something, col > something...
    for c in _conjuncts(s.args.get("where")):
        isnn = None
        if isinstance(c, exp.Not) and isinstance(c.this, exp.Is) and isinstance(c.this.expression, exp.Null):
            isnn = c.this.this
        elif isinstance(c, exp.Is) and c.args.get("negate") and isinstance(c.expression, exp.Null):
            isnn = c.this
        if isnn is not None:
            ck = _colkey(isnn)
            if ck:
                notnull.add(ck)
        elif isinstance(c, (exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike)):
            for side in (c.left, c.right):
                ck = _colkey(side)
                if ck:
                    notnull.add(ck)
        elif isinstance(c, exp.In):
            ck = _colkey(c.this)
            if ck:
                notnull.add(ck)
    group = s.args.get("group")
    if group:
        gk = [_colkey(g) for g in group.expressions]
        keys = [gk] if all(gk) else []
    dist = s.args.get("distinct")
    if dist is not None and not dist.args.get("on"):
        keys.append([_colkey(p.unalias()) for p in s.selects])
    if any(_own(s, a) for a in s.find_all(exp.AggFunc)) and not group and not any(
            a.find_ancestor(exp.Window) for a in s.find_all(exp.AggFunc) if _own(s, a)):
        return [], set()   # one row: no key column
    if s.args.get("limit") is not None and keys == []:
        return [], set()
    out_of = {}
    for p in s.selects:
        ck = _colkey(p.unalias())
        if ck and ck not in out_of:
            out_of[ck] = p.alias_or_name
    out_keys = []
    for k in keys:
        if k and all(c is not None and c in out_of for c in k):
            out_keys.append([out_of[c] for c in k])
    return out_keys, {out_of[c] for c in notnull if c in out_of}
