CREATE OR REPLACE FUNCTION deltapipe.start_run(p_pipeline text, p_trigger text DEFAULT 'sql',
                                               p_args jsonb DEFAULT '{}', p_models text[] DEFAULT NULL,
                                               p_sources text[] DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
-- Create a pipeline run and its queue: one pending node_run per model (all
-- models, or p_models), plus one 'load' node per name in p_sources (executed by
-- the Python controller). A node's upstreams are the upstream nodes in this run.
DECLARE
    p      record;
    run_id bigint;
    nodes  text[];
    bad    text;
BEGIN
    SELECT deltapipe._pipeline(p_pipeline) AS name INTO p;
    IF p_models IS NULL THEN
        p_models := ARRAY(SELECT name FROM deltapipe.model WHERE pipeline = p.name ORDER BY name);
    END IF;
    SELECT x INTO bad FROM unnest(p_models) x
     WHERE NOT EXISTS (SELECT 1 FROM deltapipe.model m WHERE m.pipeline = p.name AND m.name = x) LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP203', MESSAGE = format('unknown model %s in pipeline %s', bad, p.name),
            HINT = 'list the models with `deltapipe dag DIR`';
    END IF;
    nodes := p_models || coalesce(p_sources, '{}');
    INSERT INTO deltapipe.run (pipeline, kind, trigger, status, args)
    VALUES (p.name, 'pipeline', p_trigger, 'running', coalesce(p_args, '{}'))
    RETURNING id INTO run_id;
    INSERT INTO deltapipe.node_run (run_id, node, node_kind, status, upstreams)
    SELECT run_id, s, 'load', 'pending', '{}' FROM unnest(p_sources) s;
    INSERT INTO deltapipe.node_run (run_id, node, node_kind, status, upstreams)
    SELECT run_id, m, 'model', 'pending',
           ARRAY(SELECT e.upstream FROM deltapipe.model_edge e
                  WHERE e.pipeline = p.name AND e.node = m AND e.upstream = ANY (nodes) ORDER BY 1)
      FROM unnest(p_models) m;
    RETURN run_id;
END
$fn$;

COMMENT ON FUNCTION deltapipe.start_run(text, text, jsonb, text[], text[]) IS
  'Create a pipeline run and its queue of pending node runs (all models or the given ones, plus source load nodes); returns the run id.';
