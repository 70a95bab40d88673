"""`deltapipe demo`: a sample file, a changed version, what changed, what was rejected."""

from __future__ import annotations

from pathlib import Path

from deltapipe.load.datasets import create, drop, list_all
from deltapipe.db import connect
from deltapipe.load.loader import LoadOptions, load_file

V1 = """id,name,city,balance,joined,active
1,Ada Lovelace,London,1200.50,2024-01-03,true
2,Alan Turing,Wilmslow,830.00,2024-01-05,true
3,Grace Hopper,"Arlington, VA",2210.75,2024-02-11,true
4,Edsger Dijkstra,Nuenen,15.20,2024-02-12,false
5,Barbara Liskov,Boston,990.00,2024-03-01,true
6,"Donald ""Don"" Knuth",Stanford,4000.00,2024-03-08,true
"""

V2 = """id,name,city,balance,joined,active
1,Ada Lovelace,London,1200.50,2024-01-03,true
2,Alan Turing,Wilmslow,905.00,2024-01-05,true
3,Grace Hopper,"Arlington, VA",2210.75,2024-02-11,true
5,Barbara Liskov,Boston,990.00,2024-03-01,true
6,"Donald ""Don"" Knuth",Stanford,4000.00,2024-03-08,true
7,Frances Allen,"Peru, NY",310.00,2024-04-02,true
8,Ken Thompson,Berkeley,lots,2024-04-03,true
9,Dennis Ritchie,Murray Hill,100.00,2024-02-30,true
,Nobody,Nowhere,0,2024-01-01,false
"""


def run_demo(dsn: str | None, workdir: str, echo=print, show_load=None) -> None:
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "people_v1.csv").write_text(V1)
    (d / "people_v2.csv").write_text(V2)
    if any(x["name"] == "demo_people" for x in list_all(dsn)):
        drop(dsn, "demo_people", drop_table=True)
    ds = create(dsn, "demo_people", ["id"], sample_file=str(d / "people_v1.csv"))
    echo("== dataset demo_people, columns inferred from people_v1.csv:")
    for c in ds["columns"]:
        echo("   %-10s %s" % (c["name"], c["type"]))
    echo("\n== load people_v1.csv (first load builds the table)")
    r1 = load_file(dsn, "demo_people", d / "people_v1.csv", LoadOptions(), progress=False)
    show_load(r1) if show_load else echo(r1)
    echo("\n== load people_v2.csv (snapshot: one row changed, one gone, one new, three bad)")
    r2 = load_file(dsn, "demo_people", d / "people_v2.csv", LoadOptions(), progress=False)
    show_load(r2) if show_load else echo(r2)
    with connect(dsn) as conn:
        echo("\n== what changed (deltapipe.changeset: before-image -> now)")
        for op, key, before, now in conn.execute(
                "SELECT c.op, c.key, c.before - '_dp_hash', to_jsonb(p) - '_dp_hash' FROM deltapipe.changeset c "
                "LEFT JOIN public.demo_people p ON p.id = (c.key->>'id')::bigint "
                "WHERE c.run_id = %s ORDER BY c.key->>'id'", (r2["run_id"],)):
            echo("   %s id=%s  %s -> %s" % (op, key["id"], before or "-", now or "-"))
        echo("\n== rejects (deltapipe.reject)")
        for line, col, state, msg, raw in conn.execute(
                "SELECT line_no, column_name, sqlstate, message, raw_line FROM deltapipe.reject "
                "WHERE run_id = %s ORDER BY line_no", (r2["run_id"],)):
            echo("   line %s  %s  %s  %s\n        | %s" % (line, col or "-", state, msg, raw))
    echo("\n== load people_v2.csv again: identical file, nothing to do")
    r3 = load_file(dsn, "demo_people", d / "people_v2.csv", LoadOptions(), progress=False)
    show_load(r3) if show_load else echo(r3)
    from deltapipe.db import resolve_dsn
    echo("\nTry: deltapipe runs; deltapipe runs show %s; psql %s -c 'table demo_people'"
         % (r2["run_id"], resolve_dsn(dsn)))
