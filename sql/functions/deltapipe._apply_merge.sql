CREATE OR REPLACE FUNCTION deltapipe._apply_merge(p_ds deltapipe.dataset, p_delta text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- apply() step, strategy merge: one MERGE of the net change p_delta
-- (<staging>_d) into the target by key: D deletes, H rewrites the row hash only,
-- U updates the other columns and the hash, I inserts. A distributed (Citus)
-- target gets the same change as a DELETE by key and an INSERT ... ON
-- CONFLICT DO UPDATE of the other columns. Returns nothing.
DECLARE
    target  text := format('%I.%I', p_ds.target_schema, p_ds.target_table);
    cols    text[] := ARRAY(SELECT c->>'name' FROM jsonb_array_elements(p_ds.columns) c);
    keys    text[] := p_ds.key_cols;
    collist text := (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c);
    kjoin   text := (SELECT string_agg(format('s.%1$I = t.%1$I', k), ' AND ') FROM unnest(keys) k);
BEGIN
    IF deltapipe._is_distributed(target::regclass) THEN
        -- a Citus table: MERGE from a local table is not supported, and the key (its
        -- distribution column) is never SET: the deletes by key, then the rest as an
        -- upsert (an H row carries its unchanged values: SET again, the same)
        EXECUTE format('DELETE FROM %s t WHERE (%s) IN (SELECT %s FROM %s s WHERE s._dp_op = %L)',
                       target, (SELECT string_agg(format('t.%I', k), ', ') FROM unnest(keys) k),
                       (SELECT string_agg(format('s.%I', k), ', ') FROM unnest(keys) k), p_delta, 'D');
        EXECUTE format('INSERT INTO %s AS t (%s, _dp_hash) SELECT %s, s._dp_hash FROM %s s WHERE s._dp_op <> %L
                        ON CONFLICT (%s) DO UPDATE SET %s',
                       target, collist, (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(cols) c), p_delta, 'D',
                       (SELECT string_agg(format('%I', k), ', ') FROM unnest(keys) k),
                       (SELECT string_agg(format('%1$I = excluded.%1$I', c), ', ') FROM unnest(cols || '_dp_hash'::text) c
                         WHERE c <> ALL (keys)));
        RETURN;
    END IF;
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
