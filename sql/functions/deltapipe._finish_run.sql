CREATE OR REPLACE FUNCTION deltapipe._finish_run(p_run_id bigint)
RETURNS text
LANGUAGE plpgsql
AS $fn$
-- Close a pipeline run: failed if a node failed, else done. Returns the status.
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
    RETURN st;
END
$fn$;

COMMENT ON FUNCTION deltapipe._finish_run(bigint) IS 'Private: close a pipeline run (done, or failed naming the failed nodes).';
