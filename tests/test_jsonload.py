"""Streamed JSON: a graph document {"nodes": [...], "edges": [...]} loads into two datasets without the
controller ever holding it (peak RSS measured on small and larger documents).

Benchmark (500 MB): python tests/test_jsonload.py --bench 500 --dsn postgresql://...
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("ijson", reason="streamed JSON needs ijson (pip install ijson)")


def write_graph(path, n_nodes: int, extra_key_first: bool = False) -> int:
    """Write a graph document element by element (the test itself stays flat too). Returns its size."""
    with open(path, "w") as f:
        f.write('{"meta": {"generator": "test", "note": "quote \\" and backslash \\\\ and \\u00e9"}, ')
        f.write('"edges": [' if extra_key_first else '"nodes": [')
        first_key, second_key = ("edges", "nodes") if extra_key_first else ("nodes", "edges")
        for part in (first_key, second_key):
            if part != first_key:
                f.write('], "%s": [' % part)
            for i in range(n_nodes):
                if i:
                    f.write(",")
                if part == "nodes":
                    f.write(json.dumps({"id": i, "label": "node \\ %d \"q\"\ttab" % i, "weight": 1.25 + i,
                                        "tags": ["a", "b"]}))
                else:
                    f.write(json.dumps({"src": i, "dst": (i * 7 + 1) % n_nodes, "w": 0.5}))
        f.write("]}")
    return os.path.getsize(path)


def create_datasets(cli, nodes="gnodes", edges="gedges"):
    assert cli("dataset", "create", nodes, "--key", "id",
               "--columns", "id bigint, label text, weight numeric, tags jsonb").exit_code == 0
    assert cli("dataset", "create", edges, "--key", "src,dst", "--columns", "src bigint, dst bigint, w float8").exit_code == 0


def run_measured(dsn, args) -> tuple[int, str]:
    """Run the CLI in a child process; return (peak RSS in kB of that process, output)."""
    env = dict(os.environ, DELTAPIPE_DSN=dsn)
    proc = subprocess.Popen([sys.executable, "-m", "deltapipe", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return usage.ru_maxrss, out


def test_graph_document_loads_into_two_datasets(cli, conn, dsn, tmp_path):
    create_datasets(cli)
    doc = tmp_path / "g.json"
    write_graph(doc, 1000, extra_key_first=True)  # edges come before nodes: order does not matter
    r = cli("load-json", doc, "--array", "nodes=gnodes", "--array", "edges=gedges")
    assert r.exit_code == 0, r.output
    assert "gnodes <- %s#nodes" % doc in r.output and "read 1000  +1000" in r.output
    assert conn.execute("SELECT count(*) FROM public.gnodes").fetchone()[0] == 1000
    assert conn.execute("SELECT count(*) FROM public.gedges").fetchone()[0] == 1000
    row = conn.execute("SELECT label, weight, tags FROM public.gnodes WHERE id = 3").fetchone()
    assert row == ('node \\ 3 "q"\ttab', __import__("decimal").Decimal("4.25"), ["a", "b"])
    assert conn.execute("SELECT sum(dst) FROM public.gedges").fetchone()[0] == sum((i * 7 + 1) % 1000 for i in range(1000))
    # the same document again: both skipped
    again = cli("load-json", doc, "--array", "nodes=gnodes", "--array", "edges=gedges")
    assert again.output.count("skipped") == 2, again.output


def test_errors_are_one_line(cli, tmp_path):
    create_datasets(cli)
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": [{"id": 1}, {"id": 2,]}')
    r = cli("load-json", bad, "--array", "nodes=gnodes")
    assert r.exit_code == 1 and r.output.startswith("error: %s: invalid JSON" % bad) and r.output.count("\n") == 1
    r = cli("load-json", bad, "--array", "nodes")
    assert r.exit_code == 1 and "expected PATH=DATASET" in r.output
    r = cli("load-json", bad, "--array", "nodes=nosuch")
    assert r.exit_code == 1 and r.output.startswith("error: unknown dataset nosuch")
    good = tmp_path / "g.json"
    write_graph(good, 3)
    r = cli("load-json", good, "--array", "vertices=gnodes")
    assert r.exit_code == 1 and "no array elements at JSON path vertices" in r.output


def test_controller_memory_stays_flat(cli, dsn, tmp_path):
    """Peak RSS of the controller loading a ~4 MB and a ~40 MB document differ by far less than the document."""
    create_datasets(cli)
    create_datasets(cli, "lnodes", "ledges")  # first loads both times: the same work per row
    small, large = tmp_path / "small.json", tmp_path / "large.json"
    s_size = write_graph(small, 20_000)
    l_size = write_graph(large, 200_000)
    rss_small, _ = run_measured(dsn, ["load-json", str(small), "--array", "nodes=gnodes", "--array", "edges=gedges"])
    rss_large, out = run_measured(dsn, ["load-json", str(large), "--array", "nodes=lnodes", "--array", "edges=ledges"])
    assert "read 200000" in out, out
    growth_kb = rss_large - rss_small
    print("doc %.1f MB -> %.1f MB: peak RSS %d kB -> %d kB" % (s_size / 1e6, l_size / 1e6, rss_small, rss_large))
    assert growth_kb < (l_size - s_size) / 1024 / 4, (rss_small, rss_large, l_size)
    # (the absolute peak depends on how far COPY runs ahead of a busy server; the growth is what must stay flat)


def bench(dsn: str, mb: int, workdir: str) -> None:
    """Write a graph document of about `mb` MB, load it, print size, time and the controller's peak RSS."""
    import psycopg
    path = os.path.join(workdir, "graph_%dmb.json" % mb)
    n = int(mb * 1e6 / 125)  # ~125 bytes per node + edge pair
    if not os.path.exists(path):
        write_graph(path, n)
    size = os.path.getsize(path)
    with psycopg.connect(dsn, autocommit=True) as c:
        for name in ("gnodes", "gedges"):
            c.execute("SELECT deltapipe.drop_dataset(%s, true) FROM deltapipe.dataset WHERE name = %s", (name, name))
        c.execute("SELECT deltapipe.create_dataset('gnodes', ARRAY['id'], 'id bigint, label text, weight numeric, tags jsonb')")
        c.execute("SELECT deltapipe.create_dataset('gedges', ARRAY['src','dst'], 'src bigint, dst bigint, w float8')")
    t0 = time.perf_counter()
    rss, out = run_measured(dsn, ["load-json", path, "--array", "nodes=gnodes", "--array", "edges=gedges"])
    dt = time.perf_counter() - t0
    print(out.strip())
    print("document %.0f MB (%d nodes, %d edges): loaded in %.1fs, controller peak RSS %.1f MB (%.3f of the document)"
          % (size / 1e6, n, n, dt, rss / 1024, rss * 1024 / size))


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", type=int, default=500, help="document size in MB")
    ap.add_argument("--dsn", default=os.environ.get("DELTAPIPE_DSN"))
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    bench(a.dsn, a.bench, a.dir)
