CREATE OR REPLACE FUNCTION deltapipe._refresh_probe_indexes(p_target text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 3, after a create, rebuild or swap: the new table
-- p_target gets the indexes that the affected-key refreshes of the models
-- reading it probe (those their compiled programs list under "indexes",
-- deltapipe._ensure_index), now rather than at their next refresh. Returns
-- nothing.
BEGIN
    PERFORM deltapipe._ensure_index(p_target, ix->>'column')
       FROM deltapipe.model d, jsonb_array_elements(coalesce(d.program->'indexes', '[]')) ix
      WHERE d.shape IN ('keys', 'dedupe') AND to_regclass(ix->>'table') = p_target::regclass;
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_probe_indexes(text) IS
  'Private, refresh_model() step: build on a new table the indexes the affected-key refreshes of the models reading it probe.';
