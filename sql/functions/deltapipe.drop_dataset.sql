CREATE OR REPLACE FUNCTION deltapipe.drop_dataset(p_name text, p_drop_table boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    ds deltapipe.dataset := deltapipe._dataset(p_name);
BEGIN
    PERFORM 1 FROM deltapipe.dataset WHERE name = p_name FOR UPDATE;
    PERFORM deltapipe._capture_drop(p_name);
    IF p_drop_table THEN
        EXECUTE format('DROP TABLE IF EXISTS %I.%I', ds.target_schema, ds.target_table);
    END IF;
    DELETE FROM deltapipe.dataset WHERE name = p_name;
END
$fn$;

COMMENT ON FUNCTION deltapipe.drop_dataset(text, boolean) IS
  'Forget a dataset; with p_drop_table also drop its target table. Run history and rejects are kept.';
