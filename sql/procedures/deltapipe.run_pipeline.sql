CREATE OR REPLACE PROCEDURE deltapipe.run_pipeline(p_pipeline text, p_trigger text DEFAULT 'sql',
                                                   p_options jsonb DEFAULT '{}', INOUT run_id bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $fn$
-- Run a deployed pipeline's model nodes inside PostgreSQL with one worker:
--   CALL deltapipe.run_pipeline('shop');
-- Same queue as the Python controller (deltapipe.start_run, claim a ready node,
-- deltapipe.run_node). Each node runs in a subtransaction: a failed node is
-- rolled back (its table keeps its last good state), recorded, and stops its
-- downstream (p_options: {"keep_going": true, "full_refresh": true}, "models":
-- [names] to run only those).
-- One run per pipeline at a time (advisory lock): a second call raises DP202.
-- Source files are not loaded here: load them with deltapipe.load or the CLI.
DECLARE
    nd    record;
    st    text;
    dummy jsonb;
BEGIN
    PERFORM deltapipe._pipeline(p_pipeline);
    IF NOT pg_try_advisory_xact_lock(hashtext('deltapipe.pipeline'), hashtext(p_pipeline)) THEN
        RAISE EXCEPTION USING ERRCODE = 'DP202', MESSAGE = format('pipeline %s is already running', p_pipeline),
            HINT = 'wait for the other run to finish (`deltapipe run --wait` waits)';
    END IF;
    run_id := deltapipe.start_run(p_pipeline, coalesce(p_trigger, 'sql'),
                                  coalesce(p_options, '{}') || jsonb_build_object('workers', 1, 'runner', 'sql'),
                                  CASE WHEN p_options ? 'models'
                                       THEN ARRAY(SELECT jsonb_array_elements_text(p_options->'models')) END);
    LOOP
        SELECT * INTO nd FROM deltapipe._claim_node(run_id, 'sql');
        EXIT WHEN nd.node_run_id IS NULL;
        BEGIN
            dummy := deltapipe.run_node(nd.node_run_id);
        EXCEPTION WHEN OTHERS THEN
            PERFORM deltapipe._node_failed(nd.node_run_id, SQLERRM, SQLSTATE);
        END;
    END LOOP;
    st := deltapipe._finish_run(run_id);
END
$fn$;

COMMENT ON PROCEDURE deltapipe.run_pipeline(text, text, jsonb, bigint) IS
  'Run a deployed pipeline''s models inside PostgreSQL (one worker, same queue and refresh logic as `deltapipe run`); returns the run id.';
