"""`deltapipe report RUN -o FILE.html`: one self-contained page, checked in headless Chromium."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib

import pytest

from pipeline_helpers import make_pipeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed "
                                    "(apt-get install -y chromium)")


def png_colours(data: bytes) -> int:
    """Distinct colours of an 8-bit RGB/RGBA PNG (a small decoder: no imaging library needed)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours = set()
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 4 == 0:
            for x in range(0, stride, bpp * 2):
                colours.add(bytes(line[x:x + 3]))
        prev = line
    return len(colours)


def make_run(cli, tmp_path, fail=False):
    models = {
        "by_customer": "-- key: customer\nSELECT customer, sum(amount) AS total FROM orders GROUP BY customer",
        "big_customers": "-- key: customer\nSELECT customer, total FROM by_customer WHERE total > 10",
        "daily": "-- key: day\nSELECT day, count(*) AS n FROM orders GROUP BY day",
    }
    if fail:
        models["broken"] = "SELECT 1 / (n - n) AS boom FROM daily"
    d = make_pipeline(tmp_path / "p", models)
    r = cli("run", d)
    assert r.exit_code == (1 if fail else 0), r.output
    return int(re.search(r"run (\d+) ", r.output.splitlines()[-1] if not fail else r.output).group(1)), list(models)


def test_report_is_one_self_contained_file(cli, conn, tmp_path):
    run_id, models = make_run(cli, tmp_path)
    out = tmp_path / "run.html"
    r = cli("report", run_id, "-o", out)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("wrote %s (4 nodes" % out)
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    # no external assets: nothing fetched (the SVG namespace URI is not a fetch)
    without_ns = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", without_ns, re.I), "external reference"
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\((?!#)", page, re.I)
    for name in models + ["orders"]:
        assert 'data-node="%s"' % name in page
    # DAG edges follow the dependencies
    assert 'data-from="by_customer" data-to="big_customers"' in page
    assert 'data-from="orders" data-to="daily"' in page


def test_report_errors(cli, tmp_path):
    r = cli("report", 999999, "-o", tmp_path / "x.html")
    assert r.exit_code == 1 and r.output.startswith("error: unknown run 999999") and r.output.count("\n") == 1


@needs_chromium
def test_report_renders_in_headless_chromium(cli, tmp_path):
    run_id, models = make_run(cli, tmp_path, fail=True)
    out = tmp_path / "run.html"
    assert cli("report", run_id, "-o", out).exit_code == 0
    page = out.read_text()
    shot = tmp_path / "shot.png"
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,800",
              "--disable-background-networking", "--disable-component-update", "--no-first-run",
              "--user-data-dir=%s" % (tmp_path / "chrome-profile")]
    subprocess.run(common + ["--screenshot=%s" % shot, out.as_uri()], check=True, capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 1000
    colours = png_colours(shot.read_bytes())
    assert colours > 8, "screenshot looks blank (%d colours)" % colours
    dom = subprocess.run(common + ["--dump-dom", out.as_uri()], check=True, capture_output=True, timeout=120,
                         text=True).stdout
    for name in models + ["orders"]:
        assert re.search(r">%s<" % re.escape(name), dom), "%s not rendered" % name
    assert 'class="node failed"' in dom  # the failing model is coloured as failed
    assert 'class="bar failed"' in dom


def test_blank_page_has_few_colours(tmp_path):
    """The blank check itself can fail: a white page has one colour."""
    if CHROMIUM is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium)")
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body style='background:#fff'></body></html>")
    shot = tmp_path / "blank.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,800",
                    "--disable-background-networking", "--disable-component-update", "--no-first-run",
                    "--user-data-dir=%s" % (tmp_path / "prof"), "--screenshot=%s" % shot, blank.as_uri()],
                   check=True, capture_output=True, timeout=120)
    assert png_colours(shot.read_bytes()) <= 2
