CREATE OR REPLACE FUNCTION deltapipe._refresh_merge_distributed(p_target text, p_newt text, p_key_cols text[])
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 3, strategy merge of a distributed (Citus) model,
-- instead of deltapipe._refresh_merge_keyed: the new table p_newt is
-- distributed and co-located with the target p_target, so both statements run
-- shard by shard: the keys the new table no longer has are deleted, then the
-- rows whose hash differs are inserted or, under an existing key
-- p_key_cols, update the other columns (the key, the distribution column, is
-- never SET). The new table is then dropped. Returns nothing.
DECLARE
    cols  text[];
    kjoin text := (SELECT string_agg(format('n.%1$I = t.%1$I', k), ' AND ') FROM unnest(p_key_cols) k);
BEGIN
    cols := ARRAY(SELECT a.attname::text FROM pg_attribute a
                   WHERE a.attrelid = p_newt::regclass AND a.attnum > 0 AND NOT a.attisdropped
                     AND a.attname <> '_dp_hash' ORDER BY a.attnum);
    EXECUTE format('DELETE FROM %s t WHERE NOT EXISTS (SELECT 1 FROM %s n WHERE %s)', p_target, p_newt, kjoin);
    EXECUTE format('INSERT INTO %s AS t (%s, _dp_hash)
                    SELECT %s, n._dp_hash FROM %s n
                     WHERE NOT EXISTS (SELECT 1 FROM %s t WHERE %s AND t._dp_hash = n._dp_hash)
                    ON CONFLICT (%s) DO UPDATE SET %s',
                   p_target, (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),
                   (SELECT string_agg(format('n.%I', c), ', ') FROM unnest(cols) c), p_newt, p_target, kjoin,
                   (SELECT string_agg(format('%I', k), ', ') FROM unnest(p_key_cols) k),
                   (SELECT string_agg(format('%1$I = excluded.%1$I', c), ', ') FROM unnest(cols || '_dp_hash'::text) c
                     WHERE c <> ALL (p_key_cols)));
    EXECUTE format('DROP TABLE %s', p_newt);
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_merge_distributed(text, text, text[]) IS
  'Private, refresh_model() step: apply a distributed model''s change by key, shard by shard (no MERGE, no ctid), drop the new table.';
