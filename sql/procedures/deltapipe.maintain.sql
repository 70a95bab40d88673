CREATE OR REPLACE PROCEDURE deltapipe.maintain(p_retention interval DEFAULT '30 days', INOUT result jsonb DEFAULT NULL)
LANGUAGE plpgsql
AS $fn$
-- Housekeeping, safe while loads and runs are going on:
-- 1. runs whose controller connection is gone are marked failed;
-- 2. staging tables of dead sessions (and their work tables) are dropped, except
--    those of chunked loads that can still be resumed;
-- 3. finished runs older than p_retention are pruned with their node runs,
--    rejects, changesets and change-log rows - except the last successful run of every node
--    not rolled back, which skip-unchanged compares against; a model that had not
--    read the changes of a pruned run yet gets its next refresh in full;
--    (a tracked table's captured changes go once every model reading it has read them);
-- 4. the target tables of datasets loaded since the last maintenance are ANALYZEd.
-- Schedule it with pg_cron:  SELECT cron.schedule('deltapipe-maintain', '17 3 * * *', 'CALL deltapipe.maintain()');
DECLARE
    dead_runs int;
    dropped   int := 0;
    pruned    int;
    prune     bigint[];
    analyzed  int := 0;
    captured  bigint;
    t         record;
    last_maint timestamptz := coalesce((SELECT max(finished_at) FROM deltapipe.run WHERE args->>'maintenance' = 'true'),
                                       '-infinity');
BEGIN
    UPDATE deltapipe.run r SET status = 'failed', finished_at = clock_timestamp(),
           error = coalesce(error, 'the controller went away before the run finished')
     WHERE r.status = 'running' AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.backend_pid);
    GET DIAGNOSTICS dead_runs = ROW_COUNT;
    UPDATE deltapipe.node_run n SET status = 'failed', finished_at = clock_timestamp(), error = coalesce(n.error, 'the run died')
      FROM deltapipe.run r WHERE r.id = n.run_id AND r.status = 'failed' AND n.status IN ('running', 'pending');

    dropped := deltapipe._drop_dead_staging(p_retention);

    prune := ARRAY(
        SELECT r.id FROM deltapipe.run r
         WHERE r.status <> 'running' AND r.finished_at < now() - p_retention
           AND r.kind <> 'capture'  -- a tracked table's changes: pruned below, once every reader has read them
           AND NOT EXISTS (SELECT 1 FROM deltapipe.node_run n
                            WHERE n.run_id = r.id AND n.status = 'done'
                              AND n.id = (SELECT max(n2.id) FROM deltapipe.node_run n2 JOIN deltapipe.run r2 ON r2.id = n2.run_id
                                           WHERE n2.node = n.node AND n2.status = 'done' AND r2.status <> 'rolled_back')));
    -- a model that has not read the changes of a pruned run yet (a node run of one of
    -- its inputs after its watermark's) loses its change position: its next refresh
    -- is a full one, not an incremental one missing those changes
    UPDATE deltapipe.model m SET watermark = NULL
     WHERE m.watermark IS NOT NULL
       AND EXISTS (SELECT 1 FROM jsonb_each(m.watermark) w(u, v)
                     JOIN deltapipe.node_run n ON n.node = w.u AND n.id > coalesce((w.v->>'nr')::bigint, 0)
                    WHERE n.run_id = ANY (prune) AND n.status = 'done' AND n.inserted + n.updated + n.deleted > 0);
    DELETE FROM deltapipe.run r WHERE r.id = ANY (prune);
    GET DIAGNOSTICS pruned = ROW_COUNT;
    -- the changes captured from tracked tables (and datasets' tables) that every model
    -- reading them has read: at or below each reader's position, and committed before
    -- the oldest transaction its snapshot still saw running (deltapipe._changes_range);
    -- with no reader, every committed one (a new reader starts with a full build)
    WITH lim AS (
        SELECT tk.name, tk.run_id,
               min((m.watermark->tk.name->>'seq')::bigint) AS seq,
               min(pg_snapshot_xmin(coalesce(m.watermark->tk.name->>'snap', '1:1:')::pg_snapshot)) AS xmin,
               count(m.name) AS readers
          FROM deltapipe.tracked tk
          LEFT JOIN deltapipe.model_edge e ON e.upstream = tk.name AND e.upstream_kind = 'source'
          LEFT JOIN deltapipe.model m ON m.pipeline = e.pipeline AND m.name = e.node
         WHERE tk.run_id IS NOT NULL
         GROUP BY tk.name, tk.run_id)
    DELETE FROM deltapipe.changeset c USING lim
     WHERE c.node = lim.name AND c.run_id = lim.run_id
       AND c.xid < least(coalesce(lim.xmin, pg_snapshot_xmin(pg_current_snapshot())), pg_snapshot_xmin(pg_current_snapshot()))
       AND (lim.readers = 0 OR c.seq <= lim.seq);
    GET DIAGNOSTICS captured = ROW_COUNT;

    FOR t IN SELECT target_schema, target_table FROM deltapipe.dataset
              WHERE last_loaded_at > last_maint AND to_regclass(format('%I.%I', target_schema, target_table)) IS NOT NULL LOOP
        EXECUTE format('ANALYZE %I.%I', t.target_schema, t.target_table);
        analyzed := analyzed + 1;
    END LOOP;

    result := jsonb_build_object('dead_runs_marked', dead_runs, 'staging_tables_dropped', dropped,
                                 'runs_pruned', pruned, 'tables_analyzed', analyzed,
                                 'captured_changes_pruned', captured);
    INSERT INTO deltapipe.run (kind, trigger, status, finished_at, args)
    VALUES ('load', 'sql', 'done', clock_timestamp(), jsonb_build_object('maintenance', true) || result);
END
$fn$;

COMMENT ON PROCEDURE deltapipe.maintain(interval, jsonb) IS
  'Housekeeping: mark dead runs, drop orphaned staging tables, prune old runs/rejects/changesets (keeping each node''s last success), ANALYZE loaded targets.';
