"""Generate benchmark CSV files: a base version and a changed version.

    python benchmarks/gendata.py OUT_DIR --rows 1000000

Writes v1.csv, v2.csv (1% updated, 0.5% deleted, 0.5% new) and bad.csv
(v1 with 1,000 malformed rows). Columns: id bigint, name text, city text,
amount numeric, created_at timestamp, active boolean, qty integer, note text;
about 5% of notes are quoted and contain commas, quotes or newlines.
"""

from __future__ import annotations

import argparse
import random
from datetime import datetime, timedelta
from pathlib import Path

HEADER = "id,name,city,amount,created_at,active,qty,note\n"
COLUMNS = ("id bigint, name text, city text, amount numeric, created_at timestamp, "
           "active boolean, qty integer, note text")
CITIES = ["Paris", "Berlin", "Lisbon", "Oslo", "Rome", "Madrid", "Vienna", "Prague"]
T0 = datetime(2024, 1, 1)


def row(i: int, rnd: random.Random, version: int = 0) -> str:
    name = "name_%d_%d" % (i, version)
    city = CITIES[(i + version) % len(CITIES)]
    amount = "%d.%02d" % (rnd.randrange(100000), rnd.randrange(100))
    ts = (T0 + timedelta(seconds=(i * 37 + version) % 31_000_000)).strftime("%Y-%m-%d %H:%M:%S")
    active = "true" if (i + version) % 3 else "false"
    qty = str((i * 7 + version) % 1000)
    r = i % 20
    if r == 0:
        note = '"note, with a comma %d"' % i
    elif r == 1 and i % 40 == 1:
        note = '"multi\nline ""quoted"" note %d"' % i
    else:
        note = "plain note %d" % i
    return ",".join((str(i), name, city, amount, ts, active, qty, note)) + "\n"


def generate(out: Path, rows: int, seed: int = 42) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    n_upd, n_del, n_new = rows // 100, rows // 200, rows // 200
    changed = rnd.sample(range(1, rows + 1), n_upd + n_del)
    upd, dele = set(changed[:n_upd]), set(changed[n_upd:])
    bad_lines = set(rnd.sample(range(1, rows + 1), min(1000, rows // 10)))
    with open(out / "v1.csv", "w") as f1, open(out / "v2.csv", "w") as f2, open(out / "bad.csv", "w") as fb:
        for f in (f1, f2, fb):
            f.write(HEADER)
        for i in range(1, rows + 1):
            r1 = row(i, random.Random(i))
            f1.write(r1)
            if i in bad_lines:
                kind = i % 4
                if kind == 0:
                    fb.write("%d,only,three\n" % i)
                elif kind == 1:
                    fb.write(r1.replace(",true,", ",maybe,").replace(",false,", ",maybe,"))
                elif kind == 2:
                    fb.write("%d,name,Paris,12x.5,2024-01-01 00:00:00,true,1,n\n" % i)
                else:
                    fb.write("%d,name,Paris,1.5,2024-02-30 00:00:00,true,1,n\n" % i)
            else:
                fb.write(r1)
            if i in dele:
                continue
            f2.write(row(i, random.Random(i), 1) if i in upd else r1)
        for i in range(rows + 1, rows + 1 + n_new):
            f2.write(row(i, random.Random(i)))
    return {"updated": n_upd, "deleted": n_del, "new": n_new, "bad": len(bad_lines)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    print(generate(Path(a.out), a.rows))
