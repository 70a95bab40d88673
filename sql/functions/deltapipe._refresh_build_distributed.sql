CREATE OR REPLACE FUNCTION deltapipe._refresh_build_distributed(p_schema text, p_sql text, p_state_sql text,
                                                               p_hidden_cols text[], p_shape text, p_newt text,
                                                               p_model text, p_tmpname text, p_key_cols text[],
                                                               p_agg_spec jsonb, OUT cols text[], OUT n_new bigint)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 1 for a distributed (Citus) model, instead of
-- deltapipe._refresh_build and the steps after it: the new table p_newt
-- (<model>__dp_new, dropped first if left over) is created empty with the
-- columns of the model's SELECT p_sql (or its p_state_sql with the hidden state
-- columns p_hidden_cols of shape p_shape) and the row hash _dp_hash, gets its
-- lookup index (deltapipe._refresh_lookup_index, p_agg_spec) and its primary
-- key p_key_cols (<p_tmpname>_pkey), is distributed by the first key column in
-- Citus's co-location group for its type, and only then filled: an INSERT ...
-- SELECT that Citus runs on the shards when the SELECT reads tables co-located
-- on that column, else through the coordinator. A key that does not hold raises
-- DP204, naming the model p_model. The SELECT runs with search_path
-- "p_schema, public". Returns the columns but _dp_hash, and the row count.
DECLARE
    old_path text := current_setting('search_path');
    sel      text;
BEGIN
    PERFORM set_config('search_path', format('%I, public', p_schema), true);
    EXECUTE format('DROP TABLE IF EXISTS %s', p_newt);
    SELECT x.cols, x.sel INTO cols, sel FROM deltapipe._refresh_select(p_sql, p_state_sql, p_hidden_cols) x;
    EXECUTE format('CREATE TABLE %s WITH (fillfactor = %s) AS %s LIMIT 0',
                   p_newt, CASE WHEN p_shape IN ('aggregate', 'distinct') THEN 80 ELSE 90 END, sel);
    PERFORM deltapipe._refresh_lookup_index(p_newt, cols, p_agg_spec, true);
    PERFORM deltapipe._refresh_primary_key(p_model, p_newt, p_tmpname, p_key_cols);
    PERFORM deltapipe._distribute(p_newt, p_key_cols[1]);
    BEGIN
        EXECUTE format('INSERT INTO %s %s', p_newt, sel);
        GET DIAGNOSTICS n_new = ROW_COUNT;
    EXCEPTION WHEN unique_violation OR not_null_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'DP204',
            MESSAGE = format('model %s: key (%s) is not unique or has nulls', p_model, array_to_string(p_key_cols, ', ')),
            DETAIL = SQLERRM,
            HINT = 'fix the SELECT or the -- key: header of the model';
    END;
    PERFORM set_config('search_path', old_path, true);
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_build_distributed(text, text, text, text[], text, text, text, text, text[], jsonb) IS
  'Private, refresh_model() step: build a distributed model''s new table (empty, keyed, distributed, then filled shard by shard).';
