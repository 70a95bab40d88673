CREATE OR REPLACE FUNCTION deltapipe._refresh_merge_keyed(p_target text, p_newt text, p_key_cols text[])
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 3, strategy merge of a keyed model: one MERGE of the net
-- delta of _dp_delta into the target p_target by key p_key_cols, the values
-- read from the new table p_newt: D deletes, a matched U updates the other
-- columns and the row hash, I inserts. The new table is then dropped. Returns
-- nothing.
DECLARE
    cols text[];
BEGIN
    cols := ARRAY(SELECT a.attname::text FROM pg_attribute a
                   WHERE a.attrelid = p_newt::regclass AND a.attnum > 0 AND NOT a.attisdropped
                     AND a.attname <> '_dp_hash' ORDER BY a.attnum);
    EXECUTE format('MERGE INTO %s t
                    USING (SELECT d._dp_op, %s%s n._dp_hash FROM pg_temp._dp_delta d LEFT JOIN %s n ON %s) s
                       ON %s
                    WHEN MATCHED AND s._dp_op = %L THEN DELETE
                    WHEN MATCHED THEN UPDATE SET %s
                    WHEN NOT MATCHED THEN INSERT (%s, _dp_hash) VALUES (%s, s._dp_hash)',
                   p_target,
                   (SELECT string_agg(format('d.%I, ', k), '') FROM unnest(p_key_cols) k),
                   coalesce((SELECT string_agg(format('n.%I, ', c), '') FROM unnest(cols) c WHERE c <> ALL (p_key_cols)), ''),
                   p_newt,
                   (SELECT string_agg(format('d.%1$I = n.%1$I', k), ' AND ') FROM unnest(p_key_cols) k),
                   (SELECT string_agg(format('t.%1$I = s.%1$I', k), ' AND ') FROM unnest(p_key_cols) k),
                   'D',
                   (SELECT string_agg(format('%1$I = s.%1$I', c), ', ') FROM unnest(cols || '_dp_hash'::text) c
                     WHERE c <> ALL (p_key_cols)),
                   (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),
                   (SELECT string_agg(format('s.%I', c), ', ') FROM unnest(cols) c));
    EXECUTE format('DROP TABLE %s', p_newt);
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_merge_keyed(text, text, text[]) IS
  'Private, refresh_model() step: MERGE the net delta into the current table by key, drop the new table.';
