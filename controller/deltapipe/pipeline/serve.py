"""`deltapipe serve PIPELINE --every 1s`: keep a pipeline's models caught up from the controller.

The loop is deltapipe.run_continuously (in SQL, so pg_cron gets the same): every interval it runs the
models whose inputs changed, committing between rounds. The controller calls it in slices of at most
an hour; Ctrl-C cancels the round under way (its transaction rolls back, earlier rounds are committed)
and returns."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import psycopg

from deltapipe.db import connect, from_db, require_installed
from deltapipe.errors import DeltapipeError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_interval(text: str) -> float:
    """'500ms', '1s', '2m', '1h' (a bare number: seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise DeltapipeError("invalid interval %r" % text, hint="give a duration such as 500ms, 1s, 2m or 1h",
                             sqlstate="DP705")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def serve(dsn: str | None, pipeline: str, every: float, duration: float | None = None, on_notice=None) -> dict:
    """Run the pipeline's changed models every `every` seconds for `duration` seconds (None: until interrupted).
    Returns {"rounds": seconds served, "stopped": True when interrupted}."""
    t0 = time.monotonic()
    stopped = False
    with connect(dsn) as conn:
        require_installed(conn)
        conn.commit()
        conn.autocommit = True
        if on_notice:
            conn.add_notice_handler(lambda d: on_notice(d.message_primary))
        try:
            while True:
                left = 3600.0 if duration is None else duration - (time.monotonic() - t0)
                if left < 0:
                    break
                conn.execute("CALL deltapipe.run_continuously(%s, %s, %s)",
                             (pipeline, timedelta(seconds=every), timedelta(seconds=min(left, 3600.0))))
                if duration is not None and time.monotonic() - t0 + every > duration:
                    break
        except KeyboardInterrupt:
            conn.cancel_safe() if hasattr(conn, "cancel_safe") else conn.cancel()
            stopped = True
        except psycopg.Error as e:
            raise from_db(e) from e
    return {"seconds": round(time.monotonic() - t0, 1), "stopped": stopped}
