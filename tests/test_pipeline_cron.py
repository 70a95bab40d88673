"""Scheduling pipelines with pg_cron (Debian's postgresql-15-cron; scripts/test.sh installs it as root)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline_helpers import make_pipeline

HAVE_CRON = Path("/usr/lib/postgresql/15/lib/pg_cron.so").exists()


@pytest.mark.skipif(not HAVE_CRON, reason="pg_cron is not installed (apt-get install postgresql-15-cron)")
def test_scheduled_pipeline_runs_in_the_database(cli, conn, tmp_path):
    d = make_pipeline(tmp_path / "p", {"totals": "-- key: customer\nSELECT customer, sum(amount) AS t FROM orders "
                                                 "GROUP BY customer"}, name="cronpipe")
    assert cli("deploy", d).exit_code == 0
    assert cli("load", "orders", d / "data" / "orders.csv").exit_code == 0
    r = cli("schedule", "cronpipe", "not a schedule")
    assert r.exit_code == 1 and r.output.startswith("error: cannot schedule cronpipe with 'not a schedule'")
    r = cli("schedule", "nope", "* * * * *")
    assert r.exit_code == 1 and r.output.startswith("error: unknown pipeline nope")
    r = cli("schedule", "cronpipe", "* * * * *")
    assert r.exit_code == 0, r.output
    try:
        assert "cronpipe" in cli("schedules").output
        deadline = time.time() + 130
        row = None
        while time.time() < deadline:
            row = conn.execute("SELECT id, status FROM deltapipe.run WHERE trigger = 'cron' AND status <> 'running' "
                               "ORDER BY id LIMIT 1").fetchone()
            if row:
                break
            time.sleep(1)
        assert row is not None, "pg_cron did not run the pipeline within 130 s"
        assert row[1] == "done"
        assert conn.execute("SELECT node, status FROM deltapipe.node_run WHERE run_id = %s", (row[0],)).fetchall() == [
            ("totals", "done")]
        assert conn.execute("SELECT sum(t) FROM totals").fetchone()[0] == 22
        out = cli("schedules").output
        assert "succeeded" in out or "running" in out, out
    finally:
        r = cli("unschedule", "cronpipe")
    assert r.exit_code == 0 and r.output == "unscheduled cronpipe\n"
    r = cli("unschedule", "cronpipe")
    assert r.exit_code == 1 and r.output.startswith("error: pipeline cronpipe is not scheduled")
    assert "no scheduled pipelines" in cli("schedules").output


@pytest.mark.skipif(HAVE_CRON, reason="pg_cron is installed")
def test_schedule_without_pg_cron_says_how_to_install(cli):
    r = cli("schedule", "x", "* * * * *")
    assert r.exit_code == 1
    assert r.output.startswith("error: pg_cron is not installed in this PostgreSQL server; hint: install it "
                               "(Debian/Ubuntu: apt-get install postgresql-15-cron)")
