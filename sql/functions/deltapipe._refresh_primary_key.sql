CREATE OR REPLACE FUNCTION deltapipe._refresh_primary_key(p_model text, p_newt text, p_tmpname text, p_key_cols text[])
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 1, a keyed model: the primary key of the new table
-- p_newt on the model's key p_key_cols, named <p_tmpname>_pkey (renamed when the
-- table becomes the target). A key that is not unique, has NULLs or is not a
-- column of the SELECT raises DP204, naming the model p_model. Returns nothing.
DECLARE
    klist text := (SELECT string_agg(format('%I', k), ', ') FROM unnest(p_key_cols) k);
BEGIN
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY (%s)', p_newt, p_tmpname || '_pkey', klist);
EXCEPTION
    WHEN unique_violation OR not_null_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'DP204',
            MESSAGE = format('model %s: key (%s) is not unique or has nulls', p_model, array_to_string(p_key_cols, ', ')),
            DETAIL = SQLERRM,
            HINT = 'fix the SELECT or the -- key: header of the model';
    WHEN undefined_column THEN
        RAISE EXCEPTION USING ERRCODE = 'DP204',
            MESSAGE = format('model %s: key column not in its SELECT', p_model),
            DETAIL = SQLERRM, HINT = 'fix the -- key: header of the model';
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_primary_key(text, text, text, text[]) IS
  'Private, refresh_model() step: add the primary key on the model''s key to the new table (DP204 when the key does not hold).';
