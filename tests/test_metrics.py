"""`deltapipe metrics`: Prometheus text from the catalog, checked with a strict parser of the format."""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from pipeline_helpers import make_pipeline

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
_SAMPLE = re.compile(r"^(%s)(?:\{((?:%s)(?:,%s)*)?\})? (\S+)(?: (-?\d+))?$" % (_NAME, _LABEL, _LABEL))


def parse_prometheus(text: str) -> dict:
    """Parse the text exposition format 0.0.4 strictly; returns {family: {"type", "help", "samples"}}.
    Raises AssertionError on anything malformed."""
    assert text.endswith("\n"), "exposition must end with a newline"
    fams: dict[str, dict] = {}
    for i, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            assert len(parts) == 4 and re.fullmatch(_NAME, parts[2]), "line %d: %r" % (i, line)
            fam = fams.setdefault(parts[2], {"type": None, "help": None, "samples": []})
            if parts[1] == "TYPE":
                assert fam["type"] is None and not fam["samples"], "line %d: TYPE twice or after samples" % i
                assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), line
                fam["type"] = parts[3]
            else:
                fam["help"] = parts[3]
            continue
        assert line and not line.startswith("#"), "line %d: unexpected %r" % (i, line)
        m = _SAMPLE.match(line)
        assert m, "line %d: not a sample: %r" % (i, line)
        name, labels, value = m.group(1), m.group(2) or "", m.group(7)
        v = float(value)  # raises on junk; +Inf/NaN allowed by float()
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        fam = fams.get(name) or fams.get(base)
        assert fam is not None and fam["type"], "line %d: sample %s before its TYPE" % (i, name)
        lab = dict(re.findall(_LABEL, labels))
        fam["samples"].append((name, lab, v))
    for fname, fam in fams.items():
        if fam["type"] == "histogram":
            series: dict[tuple, list] = {}
            for name, lab, v in fam["samples"]:
                if name.endswith("_bucket"):
                    key = tuple(sorted((k, x) for k, x in lab.items() if k != "le"))
                    series.setdefault(key, []).append((float(lab["le"]), v))
            for key, bs in series.items():
                les = [le for le, _ in bs]
                assert les == sorted(les) and math.isinf(les[-1]), "%s %s: buckets out of order or no +Inf" % (fname, key)
                counts = [c for _, c in bs]
                assert counts == sorted(counts), "%s %s: buckets not cumulative" % (fname, key)
                total = [v for n, lab, v in fam["samples"] if n == fname + "_count"
                         and tuple(sorted(lab.items())) == key]
                assert total == [counts[-1]], "%s %s: _count != +Inf bucket" % (fname, key)
        if fam["type"] == "counter":
            assert all(v >= 0 for _, _, v in fam["samples"])
    return fams


def value(fams, name, **labels):
    fam = fams[re.sub(r"_(bucket|sum|count)$", "", name)] if name not in fams else fams[name]
    got = [v for n, lab, v in fam["samples"] if n == name and all(lab.get(k) == x for k, x in labels.items())]
    assert len(got) == 1, (name, labels, got)
    return got[0]


def test_parser_rejects_malformed_text():
    with pytest.raises(AssertionError):
        parse_prometheus("# TYPE a counter\na{x=\"1} 1\n")
    with pytest.raises(AssertionError):
        parse_prometheus("b 1\n")  # no TYPE
    with pytest.raises(AssertionError):
        parse_prometheus('# TYPE h histogram\nh_bucket{le="1"} 5\nh_bucket{le="+Inf"} 3\nh_count 3\n')


def test_metrics_from_the_catalog(cli, dsn, tmp_path, write):
    cli("dataset", "create", "people", "--key", "id", "--columns", "id int, name text")
    assert cli("load", "people", write("p.csv", "id,name\n1,ann\n2,bob\nx,bad\n")).exit_code == 0
    assert cli("load", "people", write("p2.csv", "id,name\n1,ann\n2,BOB\n3,cy\n")).exit_code == 0
    d = make_pipeline(tmp_path / "pl", {"by_customer": "-- key: customer\nSELECT customer, sum(amount) AS t "
                                                       "FROM orders GROUP BY customer"})
    assert cli("run", d).exit_code == 0
    assert cli("run", d).exit_code == 0  # second run: everything skipped
    sqldir = tmp_path / "sql"
    sqldir.mkdir()
    (sqldir / "a.sql").write_text("CREATE VIEW v AS SELECT 1 AS x FROM t;")
    cli("lineage", "scan", sqldir)
    cli("lineage", "scan", sqldir)

    r = cli("metrics")
    assert r.exit_code == 0, r.output
    fams = parse_prometheus(r.output)
    assert value(fams, "deltapipe_rows_total", dataset="people", outcome="read") == 6
    assert value(fams, "deltapipe_rows_total", dataset="people", outcome="inserted") == 3
    assert value(fams, "deltapipe_rows_total", dataset="people", outcome="updated") == 1
    assert value(fams, "deltapipe_rows_rejected_total", dataset="people") == 1
    assert value(fams, "deltapipe_rows_loaded_total", dataset="people") == 4
    assert value(fams, "deltapipe_nodes_skipped_total", node="by_customer", kind="model") == 1
    assert value(fams, "deltapipe_lineage_cache_hits_total") == 1
    assert value(fams, "deltapipe_lineage_cache_misses_total") == 1
    assert fams["deltapipe_node_duration_seconds"]["type"] == "histogram"
    assert value(fams, "deltapipe_node_duration_seconds_count", kind="model") >= 1
    assert value(fams, "deltapipe_node_retries_total") == 0


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_metrics_serve(dsn, cli, write):
    cli("dataset", "create", "people", "--key", "id", "--columns", "id int, name text")
    cli("load", "people", write("p.csv", "id,name\n1,ann\n"))
    port = _free_port()
    env = dict(os.environ, DELTAPIPE_DSN=dsn)
    proc = subprocess.Popen([sys.executable, "-m", "deltapipe", "metrics", "--serve", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2) as resp:
                    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                    body = resp.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        fams = parse_prometheus(body)
        assert value(fams, "deltapipe_rows_total", dataset="people", outcome="inserted") == 1
        cli("load", "people", write("p2.csv", "id,name\n1,ann\n2,bob\n"))  # fresh on every scrape
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2) as resp:
            fams = parse_prometheus(resp.read().decode())
        assert value(fams, "deltapipe_rows_total", dataset="people", outcome="inserted") == 2
    finally:
        proc.send_signal(2)
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_metrics_round_trip_through_prometheus_parser(cli, write):
    """prometheus_client's own parser reads what `deltapipe metrics` writes, with the same families and types."""
    from prometheus_client.parser import text_string_to_metric_families
    cli("dataset", "create", "people", "--key", "id", "--columns", "id int, name text")
    cli("load", "people", write("p.csv", "id,name\n1,ann\nx,bad\n"))
    text = cli("metrics").output
    ours = parse_prometheus(text)
    theirs = {f.name: f for f in text_string_to_metric_families(text)}
    for name, fam in ours.items():
        base = name[:-len("_total")] if fam["type"] == "counter" else name
        assert theirs[base].type == fam["type"] and theirs[base].documentation == fam["help"], name
    rows = {tuple(sorted(s.labels.items())): s.value for s in theirs["deltapipe_rows"].samples}
    assert rows[(("dataset", "people"), ("outcome", "rejected"))] == 1


def test_metrics_serve_port_taken(cli):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        r = cli("metrics", "--serve", s.getsockname()[1])
    finally:
        s.close()
    assert r.exit_code == 1 and r.output.startswith("error: cannot listen on 127.0.0.1:"), r.output


def test_metrics_app_answers_503_when_the_catalog_cannot_be_read():
    from deltapipe.ops.metrics import registry, wsgi_app
    app = wsgi_app(registry("postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2"))
    got = {}

    def start_response(status, headers):
        got["status"] = status
    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""}, start_response))
    assert got["status"].startswith("503") and body.startswith(b"# error: cannot connect to PostgreSQL")
    app({"REQUEST_METHOD": "GET", "PATH_INFO": "/other", "QUERY_STRING": ""}, start_response)
    assert got["status"].startswith("404")
