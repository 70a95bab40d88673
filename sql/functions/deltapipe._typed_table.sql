CREATE OR REPLACE FUNCTION deltapipe._typed_table(p_ds deltapipe.dataset, p_staging text, p_first_load boolean DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
AS $fn$
-- Where validate() puts the typed rows of a load. On a first load they go straight
-- into a new table next to the future target (<target>__dp_load), which apply()
-- then renames, so the rows are written once; otherwise into <staging>_t.
DECLARE
    first_name text := format('%I.%I', p_ds.target_schema, left(p_ds.target_table, 40) || '__dp_load');
BEGIN
    IF coalesce(p_first_load, to_regclass(first_name) IS NOT NULL) THEN
        RETURN first_name;
    END IF;
    RETURN format('deltapipe_stage.%I', p_staging || '_t');
END
$fn$;

COMMENT ON FUNCTION deltapipe._typed_table(deltapipe.dataset, text, boolean) IS
  'Private: name of the table holding the typed rows of a load (the future target on a first load).';
