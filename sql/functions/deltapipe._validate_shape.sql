CREATE OR REPLACE FUNCTION deltapipe._validate_shape(p_fmt text, p_nfields int, p_cols text[], p_keys text[],
                                                    p_pos int[], p_mode text, p_op_pos int, p_op_col text,
                                                    OUT bad text, OUT why_shape text, OUT why_keep text, OUT why_fail text)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- validate() step 4b: why a row is refused before any cast (its shape), as SQL
-- over the fields of step 4a: malformed quoting or not a JSON object (DP103,
-- DP106), not p_nfields fields (DP101), a NULL key column (p_keys, DP102), in
-- changes mode p_mode an unknown op (column p_op_col, field p_op_pos, DP104).
-- Returns the condition bad (true for such a row); why_shape, the start of a
-- CASE giving a refused row's reason as 'sqlstate chr(31) column chr(31)
-- message' (to be ended by ' END', or by more WHEN branches first); why_keep,
-- that CASE ended (such rows are kept, with their reason); why_fail, a CASE
-- that fails the statement on such a row instead (DP199: see
-- deltapipe._validate_cast). Runs nothing.
DECLARE
    why      text;
    why_col  text;
    why_code text;
BEGIN
    bad := format('_dp_n IS NULL OR _dp_n <> %s', p_nfields);
    why := format('CASE WHEN _dp_n IS NULL THEN %L WHEN _dp_n <> %s THEN format(%L, _dp_n)',
                  CASE p_fmt WHEN 'ndjson' THEN 'not a JSON object'
                       ELSE 'malformed quoting: a quoted field is not closed, or a carriage return is outside quotes' END, p_nfields,
                  'expected ' || p_nfields || ' fields, found %s');
    why_col := 'CASE WHEN _dp_n IS NULL OR _dp_n <> ' || p_nfields || ' THEN NULL::text';
    why_code := format('CASE WHEN _dp_n IS NULL THEN %L WHEN _dp_n <> %s THEN %L',
                       CASE p_fmt WHEN 'ndjson' THEN 'DP106' ELSE 'DP103' END, p_nfields, 'DP101');
    FOR i IN 1..cardinality(p_cols) LOOP
        IF p_cols[i] = ANY (p_keys) THEN
            bad := bad || format(' OR _dp_f%s IS NULL', p_pos[i]);
            why := why || format(' WHEN _dp_f%s IS NULL THEN %L', p_pos[i], format('key column %s is null', p_cols[i]));
            why_col := why_col || format(' WHEN _dp_f%s IS NULL THEN %L', p_pos[i], p_cols[i]);
            why_code := why_code || format(' WHEN _dp_f%s IS NULL THEN %L', p_pos[i], 'DP102');
        END IF;
    END LOOP;
    IF p_mode = 'changes' THEN
        bad := bad || format(' OR coalesce(lower(btrim(_dp_f%s)), %L) NOT IN (%L, %L, %L, %L, %L, %L, %L)',
                             p_op_pos, '', 'i', 'insert', 'u', 'update', 'upsert', 'd', 'delete');
        why := why || format(' ELSE format(%L, _dp_f%s)', 'unknown op %s (use insert, update or delete)', p_op_pos);
        why_col := why_col || format(' ELSE %L', p_op_col);
        why_code := why_code || format(' ELSE %L', 'DP104');
    END IF;
    why := why || ' END';
    why_col := why_col || ' END';
    why_code := why_code || ' END';
    why_shape := format('CASE WHEN %s THEN concat_ws(chr(31), %s, coalesce(%s, %L), %s)', bad, why_code, why_col, '', why);
    -- The reason a row is refused: wrong shape (kept, to be rejected) ...
    why_keep := why_shape || ' END';
    -- ... or the same, but failing the statement (see the tries of deltapipe._validate_cast).
    why_fail := format('CASE WHEN %s THEN deltapipe._fail(%L, %L) END', bad, 'DP199', 'a row of the wrong shape');
END
$fn$;

COMMENT ON FUNCTION deltapipe._validate_shape(text, int, text[], text[], int[], text, int, text) IS
  'Private, validate() step: the shape checks (field count, NULL key, op) as SQL: the condition and the reason of a refused row.';
