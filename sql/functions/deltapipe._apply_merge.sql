CREATE OR REPLACE FUNCTION deltapipe._apply_merge(p_ds deltapipe.dataset, p_delta text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- apply() step, strategy merge: one MERGE of the net change p_delta
-- (<staging>_d) into the target by key: D deletes, H rewrites the row hash only,
-- U updates the other columns and the hash, I inserts. Returns nothing.
DECLARE
    target  text := format('%I.%I', p_ds.target_schema, p_ds.target_table);
    cols    text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(p_ds.columns) c);
    keys    text[] := p_ds.key_cols;
    collist text := (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c);
    kjoin   text := (SELECT string_agg(format('s.%1$I = t.%1$I', k), ' AND ') FROM unnest(keys) k);
BEGIN
    EXECUTE format('MERGE INTO %s t USING %s s ON %s
                    WHEN MATCHED AND s._dp_op = %L THEN DELETE
                    WHEN MATCHED AND s._dp_op = %L THEN UPDATE SET _dp_hash = s._dp_hash
                    WHEN MATCHED THEN UPDATE SET %s
                    WHEN NOT MATCHED AND s._dp_op <> %L THEN INSERT (%s, _dp_hash) VALUES (%s, s._dp_hash)',
                   target, p_delta, kjoin, 'D', 'H',
                   (SELECT string_agg(format('%1$I = s.%1$I', c), ', ') FROM unnest(cols || '_dp_hash'::text) c
                     WHERE c <> ALL (keys)),
                   'D', collist,
                   (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(cols) c));
END
$fn$;

COMMENT ON FUNCTION deltapipe._apply_merge(deltapipe.dataset, text) IS
  'Private, apply() step: MERGE the net change into the target by key.';
