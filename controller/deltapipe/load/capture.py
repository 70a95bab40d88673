"""Tracked tables: `deltapipe track`, `untrack`, `tracked` (thin wrappers over deltapipe.track / untrack)."""

from __future__ import annotations

import psycopg

from deltapipe.db import connect, from_db, require_installed


def track(dsn: str | None, table: str, key: list[str] | None = None) -> dict:
    """Track TABLE: its writes are captured into its change log; returns {name, table, key, run_id}."""
    with connect(dsn) as conn:
        require_installed(conn)
        try:
            return conn.execute("SELECT deltapipe.track(%s, %s)", (table, key or None)).fetchone()[0]
        except psycopg.Error as e:
            raise from_db(e) from e


def untrack(dsn: str | None, table: str) -> dict:
    with connect(dsn) as conn:
        require_installed(conn)
        try:
            return conn.execute("SELECT deltapipe.untrack(%s)", (table,)).fetchone()[0]
        except psycopg.Error as e:
            raise from_db(e) from e


def tracked(dsn: str | None, datasets: bool = False) -> list[dict]:
    """Tracked tables (with datasets=True also the datasets' tables) with their key, epoch and logged changes."""
    with connect(dsn) as conn:
        require_installed(conn)
        cur = conn.execute(
            """SELECT t.name, format('%%I.%%I', t.target_schema, t.target_table) AS "table", t.key_cols AS key,
                      t.dataset, t.epoch, t.run_id,
                      (SELECT coalesce(sum(CASE WHEN jsonb_typeof(c.key) = 'array'
                                                 THEN jsonb_array_length(coalesce(c.before, c.key)) ELSE 1 END), 0)
                         FROM deltapipe.changeset c WHERE c.node = t.name AND c.run_id = t.run_id) AS changes,
                      t.tracked_at
                 FROM deltapipe.tracked t WHERE %s OR t.dataset IS NULL ORDER BY t.name""", (datasets,))
        names = [c.name for c in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
