"""Shared helpers for the pipeline tests."""

from __future__ import annotations

from pathlib import Path


def make_pipeline(root: Path, models: dict[str, str], sources: str | None = None, data: dict[str, str] | None = None,
                  name: str = "p") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    toml = 'name = "%s"\n' % name
    if sources is None:
        sources = ('[[sources]]\ndataset = "orders"\nfile = "data/orders.csv"\nkey = "id"\n'
                   'columns = "id bigint, customer text, amount numeric, day date"\n')
        data = {"data/orders.csv": "id,customer,amount,day\n1,ann,10,2024-01-01\n2,bob,5,2024-01-01\n"
                                   "3,ann,7,2024-01-02\n", **(data or {})}
    (root / "pipeline.toml").write_text(toml + sources)
    for rel, text in (data or {}).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for rel, sql in models.items():
        p = root / "models" / (rel if rel.endswith(".sql") else rel + ".sql")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(sql)
    return root


def model_changes(conn, model: str, run: int | None = None, where: str = "true",
                  cols: str = "c.op, c.key, c.before") -> list:
    """Rows of deltapipe.changes for a model (of any pipeline) and a run (None: all runs)."""
    return conn.execute("SELECT %s FROM deltapipe.model m, deltapipe.changes(m.pipeline, m.name, %%s) c "
                        "WHERE m.name = %%s AND (%s)" % (cols, where), (run, model)).fetchall()
