"""Dataset catalog operations (thin wrappers over the SQL API)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from deltapipe.db import connect, from_db, require_installed
from deltapipe.errors import DeltapipeError
from deltapipe.load.infer import columns_spec, infer_columns
from deltapipe.load.files import check_file, guess_format


def _rows(cur) -> list[dict]:
    names = [c.name for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def create(dsn: str | None, name: str, key: list[str], columns: str | None = None, *, sample_file: str | None = None,
           table: str | None = None, mode: str = "snapshot", fmt: str | None = None, delimiter: str | None = None,
           encoding: str = "utf8", header: bool = True, options: dict | None = None) -> dict:
    """Declare a dataset (columns given, or inferred from ``sample_file``); ``options`` are dataset options
    set in the same transaction (deltapipe.set_dataset_option: max_rejects, the history mode's names)."""
    inferred = None
    if columns is None:
        if sample_file is None:
            raise DeltapipeError("give --columns, or a file to read the header and infer types from (--from FILE)")
        path = check_file(Path(sample_file))
        inferred = infer_columns(path, guess_format(path, fmt), delimiter=delimiter, encoding=encoding, header=header)
        columns = columns_spec(inferred)
    with connect(dsn) as conn:
        require_installed(conn)
        try:
            cur = conn.execute("SELECT * FROM deltapipe.create_dataset(%s, %s, %s, %s, %s)",
                               (name, key, columns, table, mode))
            out = _rows(cur)[0]
            for opt, value in (options or {}).items():
                if value is not None:
                    out["options"] = conn.execute("SELECT deltapipe.set_dataset_option(%s, %s, %s)",
                                                  (name, opt, value)).fetchone()[0]
        except psycopg.Error as e:
            raise from_db(e) from e
    out["inferred"] = inferred is not None
    return out


def list_all(dsn: str | None) -> list[dict]:
    with connect(dsn) as conn:
        require_installed(conn)
        return _rows(conn.execute("SELECT * FROM deltapipe.dataset ORDER BY name"))


def show(dsn: str | None, name: str) -> dict:
    with connect(dsn) as conn:
        require_installed(conn)
        rows = _rows(conn.execute("SELECT * FROM deltapipe.dataset WHERE name = %s", (name,)))
        if not rows:
            raise DeltapipeError("unknown dataset %s" % name, sqlstate="DP001",
                                 hint="list them with `deltapipe dataset list`")
        ds = rows[0]
        ds["history"] = conn.execute("SELECT deltapipe._history(d) FROM deltapipe.dataset d WHERE name = %s",
                                     (name,)).fetchone()[0]
        ds["loads"] = _rows(conn.execute(
            "SELECT n.run_id, n.status, n.started_at, n.finished_at, n.rows_in, n.inserted, n.updated, n.deleted, "
            "n.unchanged, n.rejected, n.source_file FROM deltapipe.node_run n WHERE n.node = %s AND n.node_kind = 'load' "
            "ORDER BY n.id DESC LIMIT 5", (name,)))
        return ds


def drop(dsn: str | None, name: str, drop_table: bool = False) -> None:
    with connect(dsn) as conn:
        require_installed(conn)
        try:
            conn.execute("SELECT deltapipe.drop_dataset(%s, %s)", (name, drop_table))
        except psycopg.Error as e:
            raise from_db(e) from e


def _call(dsn: str | None, sql: str, args: tuple):
    with connect(dsn) as conn:
        require_installed(conn)
        try:
            return conn.execute(sql, args).fetchone()[0]
        except psycopg.Error as e:
            raise from_db(e) from e


def add_rule(dsn: str | None, name: str, rule: str, predicate: str) -> list:
    return _call(dsn, "SELECT deltapipe.add_rule(%s, %s, %s)", (name, rule, predicate))


def drop_rule(dsn: str | None, name: str, rule: str) -> list:
    return _call(dsn, "SELECT deltapipe.drop_rule(%s, %s)", (name, rule))


def rules(dsn: str | None, name: str) -> list:
    return show(dsn, name)["options"].get("rules", [])


def set_option(dsn: str | None, name: str, option: str, value: str | None) -> dict:
    return _call(dsn, "SELECT deltapipe.set_dataset_option(%s, %s, %s)", (name, option, value))


def add_columns(dsn: str | None, name: str, columns: str) -> list:
    return _call(dsn, "SELECT deltapipe.add_columns(%s, %s)", (name, columns))
