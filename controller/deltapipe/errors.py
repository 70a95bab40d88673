"""Errors the user is expected to see: one clear line, a non-zero exit."""

from __future__ import annotations


class DeltapipeError(Exception):
    """An expected failure: bad input, unknown name, server not running..."""

    def __init__(self, message: str, *, hint: str | None = None, detail: str | None = None,
                 sqlstate: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail
        self.sqlstate = sqlstate

    def one_line(self) -> str:
        parts = [self.message]
        if self.detail:
            parts.append(self.detail)
        if self.hint:
            parts.append("hint: " + self.hint)
        return "; ".join(parts)


def from_db(exc) -> DeltapipeError:
    """Turn a psycopg error (ours: SQLSTATE class DP, or any other) into a DeltapipeError."""
    diag = getattr(exc, "diag", None)
    msg = (diag.message_primary if diag and diag.message_primary else str(exc).strip().splitlines()[0])
    ctx = diag.context if diag else None
    if ctx and "COPY" in ctx and "line" in ctx:
        # e.g. 'COPY s_12, line 3' -> point at the line of the file
        msg = "%s (%s)" % (msg, ctx.strip().splitlines()[0])
    return DeltapipeError(msg, detail=diag.message_detail if diag else None,
                          hint=diag.message_hint if diag else None,
                          sqlstate=diag.sqlstate if diag else None)
