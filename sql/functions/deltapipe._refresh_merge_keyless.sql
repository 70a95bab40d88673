CREATE OR REPLACE FUNCTION deltapipe._refresh_merge_keyless(p_target text, p_newt text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 3, strategy merge of a keyless model (a small table
-- only): the net delta of _dp_delta applied to the target p_target in place,
-- by ctid: the old copies left unmatched (D) are deleted, the new ones (I) are
-- inserted from the new table p_newt, which is then dropped. Returns nothing.
DECLARE
    cols text[];
BEGIN
    -- keyless (a small table only): the old copies left unmatched go, the new ones come
    cols := ARRAY(SELECT a.attname::text FROM pg_attribute a
                   WHERE a.attrelid = p_newt::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum);
    EXECUTE format('DELETE FROM %s t USING pg_temp._dp_delta d WHERE d._dp_op = %L AND t.ctid = d._dp_otid',
                   p_target, 'D');
    EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %s n JOIN pg_temp._dp_delta d ON n.ctid = d._dp_ntid
                     WHERE d._dp_op = %L',
                   p_target, (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) c),
                   (SELECT string_agg(format('n.%I', c), ', ') FROM unnest(cols) c), p_newt, 'I');
    EXECUTE format('DROP TABLE %s', p_newt);
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_merge_keyless(text, text) IS
  'Private, refresh_model() step: apply a keyless delta in place (unmatched old copies deleted, new ones inserted), drop the new table.';
