"""`deltapipe metrics [--serve PORT]`: Prometheus metrics read from the catalog.

A prometheus_client custom collector (CatalogCollector) reads the catalog on every collect; its
registry is exposed with prometheus_client's generate_latest (the text format: # HELP, # TYPE,
escaping of label values, histogram buckets) and, with --serve, its WSGI app on a threading WSGI
server. The SQL function deltapipe.metrics() gives the same families as text for SQL users.
"""

from __future__ import annotations

import wsgiref.simple_server

import psycopg
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from deltapipe.db import connect, require_installed, resolve_dsn
from deltapipe.errors import DeltapipeError, from_db

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
OUTCOMES = ("read", "inserted", "updated", "deleted", "unchanged", "rejected", "duplicates")

# name, help, labels of each counter family (the name as exposed, with its _total)
COUNTERS = {
    "rows": ("deltapipe_rows_total", "Rows of loaded files by dataset and outcome.", ["dataset", "outcome"]),
    "loaded": ("deltapipe_rows_loaded_total", "Rows written into dataset tables (inserted + updated + deleted).",
               ["dataset"]),
    "rejected": ("deltapipe_rows_rejected_total", "Rows refused by validation, by dataset.", ["dataset"]),
    "node_runs": ("deltapipe_node_runs_total", "Node runs by kind and status.", ["kind", "status"]),
    "skipped": ("deltapipe_nodes_skipped_total",
                "Nodes skipped because nothing changed (or an upstream failed), by node.", ["node", "kind"]),
    "retries": ("deltapipe_node_retries_total",
                "Retries of transient errors, where recorded in node_run.phases.retries.", []),
    "cache_hits": ("deltapipe_lineage_cache_hits_total", "SQL files whose lineage came from the parse cache.", []),
    "cache_misses": ("deltapipe_lineage_cache_misses_total", "SQL files parsed because the cache did not hold them.",
                     []),
    "parse_failures": ("deltapipe_lineage_parse_failures_total", "SQL files that did not parse, over all scans.", []),
    "ingest_calls": ("deltapipe_ingest_calls_total", "Calls of deltapipe.ingest that committed, by dataset.", ["dataset"]),
    "ingest_rows": ("deltapipe_ingest_rows_total",
                    "Rows of ingest calls by dataset and outcome (received, after_coalesce: keys left with a net "
                    "operation, inserted, updated, deleted, unchanged, rejected).", ["dataset", "outcome"]),
    "tables_touched": ("deltapipe_refresh_tables_touched_total",
                       "Tables a pipeline run wrote a change to, summed over runs, by pipeline.", ["pipeline"]),
    "models_refreshed": ("deltapipe_refresh_models_total",
                         "Models refreshed by pipeline runs, by pipeline and how (incremental or full).",
                         ["pipeline", "how"]),
    "change_rows": ("deltapipe_refresh_change_rows_total",
                    "Rows of change the refreshed models read, by pipeline.", ["pipeline"]),
}
INGEST_OUTCOMES = ("received", "after_coalesce", "inserted", "updated", "deleted", "unchanged", "rejected")
DURATION = ("deltapipe_node_duration_seconds", "Duration of finished node runs, by kind.", ["kind"])

_DURATIONS = "extract(epoch FROM finished_at - started_at)::float8"
_FINISHED = "finished_at IS NOT NULL AND started_at IS NOT NULL"


def read_catalog(conn: psycopg.Connection) -> dict:
    """The figures behind the metrics, as {family key: [(label values, value)]} plus "duration":
    {kind: (cumulative bucket counts, count, sum)}."""
    out: dict = {k: [] for k in COUNTERS}
    loads = conn.execute("""SELECT node, sum(rows_in), sum(inserted), sum(updated), sum(deleted), sum(unchanged),
                                   sum(rejected), sum(duplicates)
                              FROM deltapipe.node_run WHERE node_kind = 'load' GROUP BY node ORDER BY node""").fetchall()
    for node, *vals in loads:
        for outcome, v in sorted(zip(OUTCOMES, vals)):
            out["rows"].append(([node, outcome], v))
        ins, upd, dele, rej = vals[1], vals[2], vals[3], vals[5]
        out["loaded"].append(([node], ins + upd + dele))
        out["rejected"].append(([node], rej))
    for kind, status, n in conn.execute("SELECT node_kind, status, count(*) FROM deltapipe.node_run "
                                        "GROUP BY 1, 2 ORDER BY 1, 2"):
        out["node_runs"].append(([kind, status], n))
    for node, kind, n in conn.execute("SELECT node, node_kind, count(*) FROM deltapipe.node_run "
                                      "WHERE status = 'skipped' GROUP BY 1, 2 ORDER BY 1, 2"):
        out["skipped"].append(([node, kind], n))
    retries = conn.execute("SELECT coalesce(sum((phases->>'retries')::numeric), 0) FROM deltapipe.node_run "
                           "WHERE jsonb_typeof(phases->'retries') = 'number'").fetchone()[0]
    out["retries"].append(([], retries))
    hits, misses, failed = conn.execute("SELECT coalesce(sum(cache_hits), 0), coalesce(sum(cache_misses), 0), "
                                        "coalesce(sum(failed), 0) FROM deltapipe.lineage_scan").fetchone()
    out["cache_hits"].append(([], hits))
    out["cache_misses"].append(([], misses))
    out["parse_failures"].append(([], failed))
    for node, calls, *vals in conn.execute(
            "SELECT node, count(*), sum(rows_in), sum(coalesce(after_coalesce, 0)), sum(inserted), sum(updated), "
            "sum(deleted), sum(unchanged), sum(rejected) FROM deltapipe.node_run "
            "WHERE node_kind = 'load' AND mode = 'ingest' AND status = 'done' GROUP BY node ORDER BY node"):
        out["ingest_calls"].append(([node], calls))
        for outcome, v in sorted(zip(INGEST_OUTCOMES, vals)):
            out["ingest_rows"].append(([node, outcome], v))
    for pipeline, touched, inc, full, rows in conn.execute(
            "SELECT coalesce(pipeline, ''), sum(tables_touched), sum(models_refreshed - models_full), sum(models_full), "
            "sum(change_rows) FROM deltapipe.run_stat GROUP BY 1 ORDER BY 1"):
        out["tables_touched"].append(([pipeline], touched))
        out["models_refreshed"] += [([pipeline, "full"], full), ([pipeline, "incremental"], inc)]
        out["change_rows"].append(([pipeline], rows))
    duration: dict[str, tuple[list, int, float]] = {}
    for kind, n, total, cum in conn.execute(
            "SELECT node_kind, max(n), max(s), array_agg(c ORDER BY o) FROM ("
            "  SELECT r.node_kind, b.o, count(*) FILTER (WHERE r.d <= b.le) AS c, count(*) AS n, sum(r.d) AS s"
            "    FROM (SELECT node_kind, %s AS d FROM deltapipe.node_run WHERE %s) r"
            "   CROSS JOIN unnest(%%s::float8[]) WITH ORDINALITY b(le, o) GROUP BY 1, 2) x GROUP BY 1 ORDER BY 1"
            % (_DURATIONS, _FINISHED), ([float(b) for b in BUCKETS],)):
        duration[kind] = (cum, n, total)
    out["duration"] = duration
    return out


class CatalogCollector(Collector):
    """Reads the catalog of one database on every collect (each scrape is fresh)."""

    def __init__(self, dsn: str | None):
        self.dsn = resolve_dsn(dsn)

    def describe(self):
        """The families without samples: registering needs no database."""
        return self._families(None)

    def collect(self):
        conn = connect(self.dsn, autocommit=True, application_name="deltapipe metrics")
        try:
            require_installed(conn)
            data = read_catalog(conn)
        except psycopg.Error as e:
            raise from_db(e) from e
        finally:
            conn.close()
        return self._families(data)

    @staticmethod
    def _families(data: dict | None) -> list:
        fams = []
        for key, (name, doc, labels) in COUNTERS.items():
            fam = CounterMetricFamily(name, doc, labels=labels)
            for values, v in (data or {}).get(key, []):
                fam.add_metric([str(x) for x in values], float(v))
            fams.append(fam)
        name, doc, labels = DURATION
        hist = HistogramMetricFamily(name, doc, labels=labels)
        for kind, (cum, n, total) in (data or {}).get("duration", {}).items():
            buckets = [(_le(le), float(c)) for le, c in zip(BUCKETS, cum)] + [("+Inf", float(n))]
            hist.add_metric([str(kind)], buckets, float(total))
        # the histogram after the counters of runs, as deltapipe.metrics() orders them
        return fams[:6] + [hist] + fams[6:]


def _le(x: float) -> str:
    from prometheus_client.utils import floatToGoString
    return floatToGoString(x)


def registry(dsn: str | None) -> CollectorRegistry:
    """A registry holding only the catalog collector of this database."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(CatalogCollector(dsn))
    return reg


def metrics_text(dsn: str | None) -> str:
    """The Prometheus text exposition (format 0.0.4) of the catalog."""
    return generate_latest(registry(dsn)).decode("utf-8")


def wsgi_app(reg: CollectorRegistry):
    """prometheus_client's WSGI app on GET / and /metrics; a catalog that cannot be read answers 503 in one line."""
    app = make_wsgi_app(reg)

    def deltapipe_metrics_app(environ, start_response):
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics", "/favicon.ico"):
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"try /metrics\n"]
        try:
            return app(environ, start_response)
        except DeltapipeError as e:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
            return [("# error: %s\n" % e.one_line()).encode()]
    return deltapipe_metrics_app


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - no access log on the terminal
        pass


def make_server(dsn: str | None, port: int, host: str = "127.0.0.1") -> wsgiref.simple_server.WSGIServer:
    """A threading WSGI server answering GET /metrics (and /) with fresh metrics; each scrape reads the catalog."""
    reg = registry(dsn)
    generate_latest(reg)  # fail now, with one clear line, if the database is not reachable
    try:
        return wsgiref.simple_server.make_server(host, port, wsgi_app(reg), ThreadingWSGIServer,
                                                 handler_class=_QuietHandler)
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


__all__ = ["CatalogCollector", "read_catalog", "registry", "metrics_text", "wsgi_app", "make_server", "serve"]
