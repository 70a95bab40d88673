CREATE OR REPLACE FUNCTION deltapipe._ingest_propagate(p_dataset text)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
-- ingest() step, option propagate: refresh the models downstream of dataset
-- p_dataset (those that read it, and their readers, in every deployed pipeline)
-- in the caller's transaction, right after the ingest, as a pipeline run of
-- those models only (deltapipe.start_run, deltapipe.run_node: incrementally,
-- from the changes just written, where the model allows it). It waits for a
-- run of the same pipeline to finish (the pipeline's lock, as `deltapipe run`
-- takes it) and holds that lock until the caller commits. A node that fails
-- raises: the caller's ingest rolls back with it. Returns
-- [{pipeline, run_id, status, models: [{node, status, strategy, incremental}]}].
DECLARE
    p      record;
    nd     record;
    models text[];
    v_run  bigint;
    st     text;
    out    jsonb := '[]';
    dummy  jsonb;
BEGIN
    FOR p IN SELECT DISTINCT e.pipeline FROM deltapipe.model_edge e
              WHERE e.upstream_kind = 'source' AND e.upstream = p_dataset ORDER BY 1 LOOP
        WITH RECURSIVE down(node) AS (
            SELECT e.node FROM deltapipe.model_edge e
             WHERE e.pipeline = p.pipeline AND e.upstream_kind = 'source' AND e.upstream = p_dataset
            UNION
            SELECT e.node FROM deltapipe.model_edge e JOIN down d ON e.upstream = d.node
             WHERE e.pipeline = p.pipeline AND e.upstream_kind = 'model'
        )
        SELECT array_agg(node ORDER BY node) INTO models FROM down;
        PERFORM pg_advisory_xact_lock(hashtext('deltapipe.pipeline'), hashtext(p.pipeline));
        v_run := deltapipe.start_run(p.pipeline, 'sql',
                                      jsonb_build_object('workers', 1, 'runner', 'sql', 'propagate', p_dataset), models);
        LOOP
            SELECT * INTO nd FROM deltapipe._claim_node(v_run, 'sql');
            EXIT WHEN nd.node_run_id IS NULL;
            dummy := deltapipe.run_node(nd.node_run_id);
            IF dummy->>'status' = 'failed' THEN
                RAISE EXCEPTION USING ERRCODE = 'DP062',
                    MESSAGE = format('propagate: model %s of pipeline %s failed: %s', nd.node, p.pipeline, dummy->>'error'),
                    DETAIL = format('the model''s error: SQLSTATE %s', dummy->>'sqlstate'),
                    HINT = 'the ingest was rolled back with it; fix the model, or ingest without propagate';
            END IF;
        END LOOP;
        st := deltapipe._finish_run(v_run);
        out := out || jsonb_build_array(jsonb_build_object(
            'pipeline', p.pipeline, 'run_id', v_run, 'status', st,
            'models', (SELECT jsonb_agg(jsonb_build_object('node', n.node, 'status', n.status, 'strategy', n.strategy,
                                                           'incremental', n.strategy LIKE 'incremental%')
                                        ORDER BY n.id)
                         FROM deltapipe.node_run n WHERE n.run_id = v_run)));
    END LOOP;
    RETURN out;
END
$fn$;

COMMENT ON FUNCTION deltapipe._ingest_propagate(text) IS
  'Private, ingest() step: refresh the models downstream of a dataset in the caller''s transaction (option propagate).';
