"""`deltapipe metrics [--serve PORT]`: Prometheus text exposition computed by deltapipe.metrics() in SQL."""

from __future__ import annotations

import http.server
import threading

import psycopg

from deltapipe.db import connect, require_installed, resolve_dsn
from deltapipe.errors import DeltapipeError, from_db

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_text(dsn: str | None) -> str:
    conn = connect(dsn, autocommit=True, application_name="deltapipe metrics")
    try:
        require_installed(conn)
        return conn.execute("SELECT deltapipe.metrics()").fetchone()[0]
    except psycopg.Error as e:
        raise from_db(e) from e
    finally:
        conn.close()


def make_server(dsn: str | None, port: int, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """An HTTP server answering GET /metrics (and /) with fresh metrics; each request reads the catalog."""
    real = resolve_dsn(dsn)
    metrics_text(real)  # fail now, with one clear line, if the database is not reachable

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path.split("?")[0] not in ("/", "/metrics"):
                self.send_error(404, "try /metrics")
                return
            try:
                body = metrics_text(real).encode()
                code = 200
            except DeltapipeError as e:
                body, code = ("# error: %s\n" % e.one_line()).encode(), 503
            self.send_response(code)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):  # quiet
            pass

    try:
        return http.server.ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        raise DeltapipeError("cannot listen on %s:%d: %s" % (host, port, e.strerror), sqlstate="DP406",
                             hint="pick another --serve PORT") from e


def serve(dsn: str | None, port: int, host: str = "127.0.0.1", on_ready=None) -> None:
    srv = make_server(dsn, port, host)
    if on_ready:
        on_ready("serving metrics on http://%s:%d/metrics (Ctrl-C stops)" % (host, srv.server_address[1]))
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


__all__ = ["metrics_text", "make_server", "serve", "threading"]
