CREATE OR REPLACE FUNCTION deltapipe._finish_run(p_run_id bigint)
RETURNS text
LANGUAGE plpgsql
AS $fn$
-- Close a pipeline run: failed if a node failed, else done, and record its batch
-- statistics (deltapipe.run_stat). Returns the status.
DECLARE
    st   text;
    bad  text;
BEGIN
    SELECT string_agg(node, ', ' ORDER BY id) INTO bad FROM deltapipe.node_run
     WHERE run_id = p_run_id AND status = 'failed';
    st := CASE WHEN bad IS NULL THEN 'done' ELSE 'failed' END;
    UPDATE deltapipe.run SET status = st, finished_at = clock_timestamp(),
           error = CASE WHEN bad IS NULL THEN NULL ELSE format('failed: %s', bad) END
     WHERE id = p_run_id;
    -- the run's batch statistics (deltapipe metrics): tables it wrote a change to,
    -- models refreshed (of which in full), rows of change the models read
    INSERT INTO deltapipe.run_stat AS s (run_id, pipeline, tables_touched, models_refreshed, models_full, change_rows)
    SELECT p_run_id, (SELECT r.pipeline FROM deltapipe.run r WHERE r.id = p_run_id),
           count(*) FILTER (WHERE n.status = 'done' AND n.inserted + n.updated + n.deleted > 0),
           count(*) FILTER (WHERE n.status = 'done' AND n.node_kind = 'model'),
           count(*) FILTER (WHERE n.status = 'done' AND n.node_kind = 'model' AND n.full_because IS NOT NULL),
           coalesce(sum(n.rows_in) FILTER (WHERE n.status = 'done' AND n.node_kind = 'model'), 0)
      FROM deltapipe.node_run n WHERE n.run_id = p_run_id
    ON CONFLICT (run_id) DO UPDATE SET tables_touched = excluded.tables_touched, models_refreshed = excluded.models_refreshed,
           models_full = excluded.models_full, change_rows = excluded.change_rows, recorded_at = now();
    RETURN st;
END
$fn$;

COMMENT ON FUNCTION deltapipe._finish_run(bigint) IS 'Private: close a pipeline run (done, or failed naming the failed nodes).';
