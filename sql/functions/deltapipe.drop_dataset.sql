CREATE OR REPLACE FUNCTION deltapipe.drop_dataset(p_name text, p_drop_table boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- With p_drop_table, its history table (history mode) goes too.
DECLARE
    ds deltapipe.dataset := deltapipe._dataset(p_name);
    h  jsonb := deltapipe._history(ds);
BEGIN
    PERFORM 1 FROM deltapipe.dataset WHERE name = p_name FOR UPDATE;
    PERFORM deltapipe._capture_drop(p_name);
    IF p_drop_table THEN
        EXECUTE format('DROP TABLE IF EXISTS %I.%I', ds.target_schema, ds.target_table);
        IF h IS NOT NULL THEN
            EXECUTE format('DROP TABLE IF EXISTS %s', h->>'name');
        END IF;
    END IF;
    DELETE FROM deltapipe.dataset WHERE name = p_name;
END
$fn$;

COMMENT ON FUNCTION deltapipe.drop_dataset(text, boolean) IS
  'Forget a dataset; with p_drop_table also drop its target table (and history table). Run history and rejects are kept.';
