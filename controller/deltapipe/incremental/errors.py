"""Why a model cannot be maintained from its changes: NotIncremental, with the line of the construct."""

from __future__ import annotations

from sqlglot import exp


class NotIncremental(Exception):
    def __init__(self, what: str, node: exp.Expression | None = None, line: int | None = None):
        if line is None and node is not None:
            line = _line(node)
        super().__init__("%s at line %d" % (what, line) if line else what)


def _line(node: exp.Expression) -> int | None:
    for n in [node, *node.walk()] if node is not None else []:
        meta = getattr(n, "meta", None) or {}
        if meta.get("line"):
            return int(meta["line"])
        if isinstance(n, exp.Identifier) and n.meta.get("line"):
            return int(n.meta["line"])
    return None


def _short(sql: str, limit: int = 60) -> str:
    """An expression quoted in a reason: whole, or cut at a word boundary with an ellipsis."""
    sql = " ".join(sql.split())
    if len(sql) <= limit:
        return sql
    cut = sql[:limit].rsplit(" ", 1)[0]
    return cut + " ..."
