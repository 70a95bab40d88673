CREATE OR REPLACE FUNCTION deltapipe._refresh_create(p_pipeline text, p_model text, p_target text, p_newt text,
                                                    p_table text, p_tmpname text, p_pkname text, p_keyed boolean)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- refresh_model() step 3, strategy create (the model's first build): the new
-- table p_newt is renamed to p_table and becomes the target p_target; a keyed
-- model's primary key is renamed from <p_tmpname>_pkey to p_pkname; the table's
-- comment names the model p_pipeline.p_model. Returns nothing.
BEGIN
    EXECUTE format('ALTER TABLE %s RENAME TO %I', p_newt, p_table);
    IF p_keyed THEN
        PERFORM deltapipe._rename_primary_key(p_target, p_tmpname || '_pkey', p_pkname);
    END IF;
    EXECUTE format('COMMENT ON TABLE %s IS %L', p_target, format('deltapipe model %s.%s', p_pipeline, p_model));
END
$fn$;

COMMENT ON FUNCTION deltapipe._refresh_create(text, text, text, text, text, text, text, boolean) IS
  'Private, refresh_model() step: a first build renames the new table to the target (primary key and comment).';
