CREATE OR REPLACE FUNCTION deltapipe._apply_changeset(p_ds deltapipe.dataset, p_delta text, p_run_id bigint)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- apply() step: records the net change p_delta (<staging>_d) of run p_run_id in
-- deltapipe.changeset, one row per key except H (only a new row hash): the
-- before-image of updates and deletes, the after-image of inserts and updates
-- (an incremental refresh reads the new row here instead of looking it up in
-- the target by key). Returns nothing.
DECLARE
    cols text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(p_ds.columns) c);
BEGIN
    EXECUTE format('INSERT INTO deltapipe.changeset (run_id, node, op, key, before, after)
                    SELECT %L, %L, s._dp_op, jsonb_build_object(%s), s._dp_before,
                           CASE WHEN s._dp_op <> %L THEN %s END
                    FROM %s s WHERE s._dp_op <> %L',
                   p_run_id, p_ds.name,
                   (SELECT string_agg(format('%L, s.%I', k, k), ', ') FROM unnest(p_ds.key_cols) k),
                   -- (jsonb_build_object takes at most 100 arguments: 50 columns a call)
                   'D', (SELECT string_agg(format('jsonb_build_object(%s)', q.p), ' || ')
                           FROM (SELECT string_agg(format('%L, s.%I', u.c, u.c), ', ' ORDER BY u.i) AS p
                                   FROM unnest(cols) WITH ORDINALITY u(c, i) GROUP BY (u.i - 1) / 50) q),
                   p_delta, 'H');
END
$fn$;

COMMENT ON FUNCTION deltapipe._apply_changeset(deltapipe.dataset, text, bigint) IS
  'Private, apply() step: record the before- and after-images of the net change in deltapipe.changeset.';
