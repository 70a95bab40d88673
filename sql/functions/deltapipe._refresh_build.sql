CREATE OR REPLACE FUNCTION deltapipe._refresh_build(p_schema text, p_sql text, p_state_sql text, p_hidden_cols text[],
                                                   p_shape text, p_newt text, OUT cols text[], OUT n_new bigint)
RETURNS record
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 1, build: the model's SELECT p_sql into the new table
-- p_newt (<model>__dp_new in the model's schema, or in pg_temp for a small
-- table), dropped first if left over, each row with its row hash _dp_hash. An
-- aggregate or distinct model (shape p_shape) is built from its p_state_sql,
-- which adds the hidden state columns p_hidden_cols (counts, sums, group hash).
-- The SELECT runs with search_path "p_schema, public"; the caller's search_path
-- is restored after. Returns the columns of the new table but _dp_hash (the
-- SELECT's, less the _dp_* ones a SELECT * over another model brings, then the
-- hidden ones) and its row count.
DECLARE
    old_path text := current_setting('search_path');
    sel      text;
BEGIN
    PERFORM set_config('search_path', format('%I, public', p_schema), true);
    EXECUTE format('DROP TABLE IF EXISTS %s', p_newt);
    -- the SELECT's columns, then the hidden state columns, and the SELECT with row hashes
    SELECT x.cols, x.sel INTO cols, sel FROM deltapipe._refresh_select(p_sql, p_state_sql, p_hidden_cols) x;
    -- free space in every page, so that the updates of later refreshes stay on their
    -- page (HOT: no new index entry, no new page); aggregate and distinct tables,
    -- whose groups are updated in place, keep more
    EXECUTE format('CREATE TABLE %s WITH (fillfactor = %s) AS %s',
                   p_newt, CASE WHEN p_shape IN ('aggregate', 'distinct') THEN 80 ELSE 90 END, sel);
    GET DIAGNOSTICS n_new = ROW_COUNT;
    PERFORM set_config('search_path', old_path, true);
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_build(text, text, text, text[], text, text) IS
  'Private, refresh_model() step: build the model''s SELECT into the new table, with a row hash per row; returns its columns and row count.';
