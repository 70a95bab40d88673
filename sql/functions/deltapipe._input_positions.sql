CREATE OR REPLACE FUNCTION deltapipe._input_positions(p_pipeline text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
AS $fn$
-- {model: {upstream: position}} for a pipeline's models: a source's last change
-- (with its checksum, and a captured table's epoch, writes and columns), a model's
-- last logged change (with its checksum), an external table's now (always moved).
-- deltapipe.run_continuously runs a model when its positions moved.
BEGIN
RETURN (SELECT coalesce(jsonb_object_agg(x.name, x.pos), '{}')
  FROM (SELECT mm.name,
               (SELECT coalesce(jsonb_object_agg(e.upstream, CASE e.upstream_kind
                           WHEN 'source' THEN concat_ws(':',
                               (SELECT max(c.seq) FROM deltapipe.changeset c WHERE c.node = e.upstream),
                               (SELECT d.row_count || '/' || d.checksum FROM deltapipe.dataset d WHERE d.name = e.upstream),
                               (SELECT t.epoch || '/' || t.writes || '/' || t.columns FROM deltapipe.tracked t WHERE t.name = e.upstream))
                           WHEN 'model' THEN (SELECT u.log_seq || ':' || coalesce(u.checksum::text, '') || ':' || coalesce(u.last_refreshed_at::text, '')
                                                FROM deltapipe.model u WHERE u.pipeline = mm.pipeline AND u.name = e.upstream)
                           ELSE clock_timestamp()::text END), '{}')
                  FROM deltapipe.model_edge e WHERE e.pipeline = mm.pipeline AND e.node = mm.name) AS pos
          FROM deltapipe.model mm WHERE mm.pipeline = p_pipeline) x);
END
$fn$;

COMMENT ON FUNCTION deltapipe._input_positions(text) IS
  'Private: per model of a pipeline, the change position of each input (deltapipe.run_continuously runs the models whose positions moved).';
