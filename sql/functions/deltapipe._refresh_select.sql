CREATE OR REPLACE FUNCTION deltapipe._refresh_select(p_sql text, p_state_sql text, p_hidden_cols text[],
                                                    OUT cols text[], OUT sel text)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- The build of a model's table, shared by deltapipe._refresh_build and
-- _refresh_build_distributed: its columns (the SELECT p_sql's, less the _dp_* ones a
-- SELECT * over another model brings, then the hidden state columns p_hidden_cols)
-- and the SELECT that fills it (p_state_sql, or p_sql, with each row's hash
-- _dp_hash). Runs with the caller's search_path.
BEGIN
    DROP TABLE IF EXISTS pg_temp._dp_shape;
    EXECUTE format('CREATE TEMP TABLE _dp_shape AS SELECT * FROM (%s) _dp_q LIMIT 0', p_sql);
    cols := ARRAY(SELECT a.attname::text FROM pg_attribute a
                   WHERE a.attrelid = 'pg_temp._dp_shape'::regclass AND a.attnum > 0 AND NOT a.attisdropped
                     AND a.attname NOT LIKE '\_dp\_%' ORDER BY a.attnum);
    DROP TABLE pg_temp._dp_shape;
    cols := cols || coalesce(p_hidden_cols, '{}');
    sel := format('SELECT %s, hashtextextended(ROW(%s)::text, 0) AS _dp_hash FROM (%s) _dp_q',
                  (SELECT string_agg(format('_dp_q.%I', c), ', ') FROM unnest(cols) c),
                  (SELECT string_agg(format('_dp_q.%I', c), ', ') FROM unnest(cols) c), coalesce(p_state_sql, p_sql));
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_select(text, text, text[]) IS
  'Private, refresh_model() step: the columns of a model''s new table and the SELECT (with row hashes) that fills it.';
