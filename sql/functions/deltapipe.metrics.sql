CREATE OR REPLACE FUNCTION deltapipe.metrics()
RETURNS text
LANGUAGE plpgsql STABLE
AS $fn$
-- Prometheus text exposition (format 0.0.4) computed from the catalog: rows per dataset
-- and outcome, node durations as a histogram, node runs by status, skipped nodes,
-- retries (node_run.phases->'retries' when recorded), lineage parse-cache hits/misses,
-- ingest calls and their rows (received, after coalescing, inserted/updated/deleted/
-- unchanged/rejected).
DECLARE
    buckets numeric[] := ARRAY[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
    out text := '';
    chunk text;
BEGIN
    out := out || E'# HELP deltapipe_rows_total Rows of loaded files by dataset and outcome.\n'
               || E'# TYPE deltapipe_rows_total counter\n';
    SELECT string_agg(format('deltapipe_rows_total{dataset="%s",outcome="%s"} %s',
                             deltapipe._prom_label(n.node), o.k, o.v), E'\n' ORDER BY n.node, o.k) || E'\n'
      INTO chunk
      FROM (SELECT node, sum(rows_in) AS rows_in, sum(inserted) AS inserted, sum(updated) AS updated,
                   sum(deleted) AS deleted, sum(unchanged) AS unchanged, sum(rejected) AS rejected,
                   sum(duplicates) AS duplicates
              FROM deltapipe.node_run r WHERE node_kind = 'load' GROUP BY node) n
     CROSS JOIN LATERAL (VALUES ('read', n.rows_in), ('inserted', n.inserted), ('updated', n.updated),
                                ('deleted', n.deleted), ('unchanged', n.unchanged), ('rejected', n.rejected),
                                ('duplicates', n.duplicates)) o(k, v);
    out := out || coalesce(chunk, '');

    out := out || E'# HELP deltapipe_rows_loaded_total Rows written into dataset tables (inserted + updated + deleted).\n'
               || E'# TYPE deltapipe_rows_loaded_total counter\n';
    SELECT string_agg(format('deltapipe_rows_loaded_total{dataset="%s"} %s', deltapipe._prom_label(node), v),
                      E'\n' ORDER BY node) || E'\n' INTO chunk
      FROM (SELECT node, sum(inserted + updated + deleted) AS v FROM deltapipe.node_run
             WHERE node_kind = 'load' GROUP BY node) s;
    out := out || coalesce(chunk, '');

    out := out || E'# HELP deltapipe_rows_rejected_total Rows refused by validation, by dataset.\n'
               || E'# TYPE deltapipe_rows_rejected_total counter\n';
    SELECT string_agg(format('deltapipe_rows_rejected_total{dataset="%s"} %s', deltapipe._prom_label(node), v),
                      E'\n' ORDER BY node) || E'\n' INTO chunk
      FROM (SELECT node, sum(rejected) AS v FROM deltapipe.node_run WHERE node_kind = 'load' GROUP BY node) s;
    out := out || coalesce(chunk, '');

    out := out || E'# HELP deltapipe_node_runs_total Node runs by kind and status.\n'
               || E'# TYPE deltapipe_node_runs_total counter\n';
    SELECT string_agg(format('deltapipe_node_runs_total{kind="%s",status="%s"} %s',
                             deltapipe._prom_label(node_kind), deltapipe._prom_label(status), n),
                      E'\n' ORDER BY node_kind, status) || E'\n' INTO chunk
      FROM (SELECT node_kind, status, count(*) AS n FROM deltapipe.node_run GROUP BY 1, 2) s;
    out := out || coalesce(chunk, '');

    out := out || E'# HELP deltapipe_nodes_skipped_total Nodes skipped because nothing changed (or an upstream failed), by node.\n'
               || E'# TYPE deltapipe_nodes_skipped_total counter\n';
    SELECT string_agg(format('deltapipe_nodes_skipped_total{node="%s",kind="%s"} %s',
                             deltapipe._prom_label(node), deltapipe._prom_label(node_kind), n),
                      E'\n' ORDER BY node, node_kind) || E'\n' INTO chunk
      FROM (SELECT node, node_kind, count(*) AS n FROM deltapipe.node_run WHERE status = 'skipped' GROUP BY 1, 2) s;
    out := out || coalesce(chunk, '');

    out := out || E'# HELP deltapipe_node_retries_total Retries of transient errors, where recorded in node_run.phases.retries.\n'
               || E'# TYPE deltapipe_node_retries_total counter\n'
               || format(E'deltapipe_node_retries_total %s\n',
                         (SELECT coalesce(sum((phases->>'retries')::numeric), 0) FROM deltapipe.node_run
                           WHERE jsonb_typeof(phases->'retries') = 'number'));

    out := out || E'# HELP deltapipe_node_duration_seconds Duration of finished node runs, by kind.\n'
               || E'# TYPE deltapipe_node_duration_seconds histogram\n';
    SELECT string_agg(line, E'\n' ORDER BY kind, ord) || E'\n' INTO chunk FROM (
        SELECT k.kind, b.ord, format('deltapipe_node_duration_seconds_bucket{kind="%s",le="%s"} %s',
                                     deltapipe._prom_label(k.kind), b.le,
                                     (SELECT count(*) FROM deltapipe.node_run r
                                       WHERE r.node_kind = k.kind AND r.finished_at IS NOT NULL AND r.started_at IS NOT NULL
                                         AND extract(epoch FROM r.finished_at - r.started_at) <= b.le)) AS line
          FROM (SELECT DISTINCT node_kind AS kind FROM deltapipe.node_run
                 WHERE finished_at IS NOT NULL AND started_at IS NOT NULL) k
         CROSS JOIN unnest(buckets) WITH ORDINALITY b(le, ord)
        UNION ALL
        SELECT node_kind, 1000 + x.ord, x.line
          FROM (SELECT node_kind, count(*) AS n, sum(extract(epoch FROM finished_at - started_at)) AS s
                  FROM deltapipe.node_run WHERE finished_at IS NOT NULL AND started_at IS NOT NULL
                 GROUP BY node_kind) t
         CROSS JOIN LATERAL (VALUES
              (1, format('deltapipe_node_duration_seconds_bucket{kind="%s",le="+Inf"} %s', deltapipe._prom_label(t.node_kind), t.n)),
              (2, format('deltapipe_node_duration_seconds_sum{kind="%s"} %s', deltapipe._prom_label(t.node_kind), round(t.s, 6))),
              (3, format('deltapipe_node_duration_seconds_count{kind="%s"} %s', deltapipe._prom_label(t.node_kind), t.n))) x(ord, line)
    ) h;
    out := out || coalesce(chunk, '');

    out := out || E'# HELP deltapipe_lineage_cache_hits_total SQL files whose lineage came from the parse cache.\n'
               || E'# TYPE deltapipe_lineage_cache_hits_total counter\n'
               || format(E'deltapipe_lineage_cache_hits_total %s\n',
                         (SELECT coalesce(sum(cache_hits), 0) FROM deltapipe.lineage_scan))
               || E'# HELP deltapipe_lineage_cache_misses_total SQL files parsed because the cache did not hold them.\n'
               || E'# TYPE deltapipe_lineage_cache_misses_total counter\n'
               || format(E'deltapipe_lineage_cache_misses_total %s\n',
                         (SELECT coalesce(sum(cache_misses), 0) FROM deltapipe.lineage_scan))
               || E'# HELP deltapipe_lineage_parse_failures_total SQL files that did not parse, over all scans.\n'
               || E'# TYPE deltapipe_lineage_parse_failures_total counter\n'
               || format(E'deltapipe_lineage_parse_failures_total %s\n',
                         (SELECT coalesce(sum(failed), 0) FROM deltapipe.lineage_scan));

    -- ingest calls (load node runs of mode ingest): rows received, left after coalescing, and what became of them
    out := out || E'# HELP deltapipe_ingest_calls_total Calls of deltapipe.ingest that committed, by dataset.\n'
               || E'# TYPE deltapipe_ingest_calls_total counter\n';
    SELECT string_agg(format('deltapipe_ingest_calls_total{dataset="%s"} %s', deltapipe._prom_label(node), n),
                      E'\n' ORDER BY node) || E'\n' INTO chunk
      FROM (SELECT node, count(*) AS n FROM deltapipe.node_run
             WHERE node_kind = 'load' AND mode = 'ingest' AND status = 'done' GROUP BY node) s;
    out := out || coalesce(chunk, '');
    out := out || E'# HELP deltapipe_ingest_rows_total Rows of ingest calls by dataset and outcome (received, after_coalesce: keys left with a net operation, inserted, updated, deleted, unchanged, rejected).\n'
               || E'# TYPE deltapipe_ingest_rows_total counter\n';
    SELECT string_agg(format('deltapipe_ingest_rows_total{dataset="%s",outcome="%s"} %s',
                             deltapipe._prom_label(n.node), o.k, o.v), E'\n' ORDER BY n.node, o.k) || E'\n'
      INTO chunk
      FROM (SELECT node, sum(rows_in) AS received, sum(coalesce(after_coalesce, 0)) AS after_coalesce,
                   sum(inserted) AS inserted, sum(updated) AS updated, sum(deleted) AS deleted,
                   sum(unchanged) AS unchanged, sum(rejected) AS rejected
              FROM deltapipe.node_run WHERE node_kind = 'load' AND mode = 'ingest' AND status = 'done' GROUP BY node) n
     CROSS JOIN LATERAL (VALUES ('received', n.received), ('after_coalesce', n.after_coalesce), ('inserted', n.inserted),
                                ('updated', n.updated), ('deleted', n.deleted), ('unchanged', n.unchanged),
                                ('rejected', n.rejected)) o(k, v);
    out := out || coalesce(chunk, '');
    -- batch statistics of pipeline runs (deltapipe.run_stat)
    out := out || E'# HELP deltapipe_refresh_tables_touched_total Tables a pipeline run wrote a change to, summed over runs, by pipeline.\n'
               || E'# TYPE deltapipe_refresh_tables_touched_total counter\n';
    SELECT string_agg(format('deltapipe_refresh_tables_touched_total{pipeline="%s"} %s', deltapipe._prom_label(p), v),
                      E'\n' ORDER BY p) || E'\n' INTO chunk
      FROM (SELECT coalesce(pipeline, '') AS p, sum(tables_touched) AS v FROM deltapipe.run_stat GROUP BY 1) s;
    out := out || coalesce(chunk, '');
    out := out || E'# HELP deltapipe_refresh_models_total Models refreshed by pipeline runs, by pipeline and how (incremental or full).\n'
               || E'# TYPE deltapipe_refresh_models_total counter\n';
    SELECT string_agg(format('deltapipe_refresh_models_total{pipeline="%s",how="%s"} %s', deltapipe._prom_label(p), h, v),
                      E'\n' ORDER BY p, h) || E'\n' INTO chunk
      FROM (SELECT coalesce(pipeline, '') AS p, x.h, sum(x.v) AS v
              FROM deltapipe.run_stat
             CROSS JOIN LATERAL (VALUES ('full', models_full), ('incremental', models_refreshed - models_full)) x(h, v)
             GROUP BY 1, 2) s;
    out := out || coalesce(chunk, '');
    out := out || E'# HELP deltapipe_refresh_change_rows_total Rows of change the refreshed models read, by pipeline.\n'
               || E'# TYPE deltapipe_refresh_change_rows_total counter\n';
    SELECT string_agg(format('deltapipe_refresh_change_rows_total{pipeline="%s"} %s', deltapipe._prom_label(p), v),
                      E'\n' ORDER BY p) || E'\n' INTO chunk
      FROM (SELECT coalesce(pipeline, '') AS p, sum(change_rows) AS v FROM deltapipe.run_stat GROUP BY 1) s;
    out := out || coalesce(chunk, '');
    RETURN out;
END
$fn$;

COMMENT ON FUNCTION deltapipe.metrics() IS
  'Prometheus text exposition of the catalog: rows per dataset and outcome, node durations (histogram), '
  'node runs by status, skipped nodes, retries, lineage parse-cache hits and misses, ingest calls and rows, refresh batch statistics. Serve it with `deltapipe metrics --serve PORT`.';
