CREATE OR REPLACE FUNCTION deltapipe.drop_stage(p_staging text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- Drop a staging table handed out by deltapipe.stage() (and its work tables) without loading it.
DECLARE
    tbl text;
    t   text;
BEGIN
    BEGIN
        tbl := deltapipe._staging(p_staging);
    EXCEPTION WHEN SQLSTATE 'DP007' THEN
        RETURN;  -- already gone
    END;
    FOREACH t IN ARRAY ARRAY['', '_t', '_d', '_s', '_c', '_n', '_b', '_q', '_x'] LOOP
        EXECUTE format('DROP TABLE IF EXISTS deltapipe_stage.%I CASCADE', tbl || t);
    END LOOP;
    DELETE FROM deltapipe.staging WHERE table_name = tbl;
END
$fn$;

COMMENT ON FUNCTION deltapipe.drop_stage(text) IS 'Drop a staging table from deltapipe.stage() without loading it.';
