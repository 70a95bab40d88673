CREATE OR REPLACE FUNCTION deltapipe._capture_dataset(p_dataset text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- A dataset's table is tracked like an application table, so that a write outside
-- deltapipe's loads (a DBA's UPDATE, another application's DELETE) reaches the
-- dataset's change log and its models. Called after each load: creates the
-- dataset's capture on its first load and puts the triggers back on a table a
-- load swapped in (the loader's own writes set deltapipe.writer: not logged twice).
DECLARE
    ds  deltapipe.dataset;
    tbl text;
BEGIN
    SELECT * INTO ds FROM deltapipe.dataset WHERE name = p_dataset;
    tbl := format('%I.%I', ds.target_schema, ds.target_table);
    IF NOT FOUND OR to_regclass(tbl) IS NULL OR cardinality(ds.key_cols) = 0 THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM deltapipe.tracked WHERE name = p_dataset) THEN
        -- (its capture run is created by the first write outside a load: deltapipe._capture_any)
        INSERT INTO deltapipe.tracked (name, target_schema, target_table, key_cols, dataset, columns)
        VALUES (p_dataset, ds.target_schema, ds.target_table, ds.key_cols, p_dataset,
                deltapipe._capture_columns(tbl::regclass));
    ELSIF EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = tbl::regclass AND g.tgname = '_dp_capture_u') THEN
        RETURN;
    END IF;
    IF deltapipe._is_distributed(tbl::regclass) THEN
        RETURN;  -- a distributed Citus table cannot have triggers: writes outside loads are not captured
    END IF;
    BEGIN
        PERFORM deltapipe._capture_install(p_dataset);
    EXCEPTION WHEN insufficient_privilege THEN
        -- a loading role that does not own the table cannot put triggers on it
        RAISE NOTICE 'writes to %s outside its loads are not captured: %', tbl, SQLERRM;
    END;
END
$fn$;

COMMENT ON FUNCTION deltapipe._capture_dataset(text) IS
  'Private: make sure a dataset''s table is captured (writes outside deltapipe''s loads are changes of the dataset).';
