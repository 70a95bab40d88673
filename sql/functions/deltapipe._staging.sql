CREATE OR REPLACE FUNCTION deltapipe._staging(p_staging text)
RETURNS text
LANGUAGE plpgsql STABLE
AS $fn$
-- The bare table name of a staging table handed out by deltapipe.stage(), or DP007.
DECLARE
    parts text[];
    tbl   text;
BEGIN
    BEGIN
        parts := parse_ident(p_staging);
    EXCEPTION WHEN others THEN
        parts := NULL;
    END;
    tbl := parts[cardinality(parts)];
    IF parts IS NULL OR (cardinality(parts) = 2 AND parts[1] <> 'deltapipe_stage') OR cardinality(parts) > 2
       OR NOT EXISTS (SELECT 1 FROM deltapipe.staging WHERE table_name = tbl)
       OR to_regclass(format('deltapipe_stage.%I', tbl)) IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DP007', MESSAGE = format('unknown staging table %s', p_staging),
            HINT = 'get one from deltapipe.stage(dataset) in the same or an earlier committed transaction';
    END IF;
    RETURN tbl;
END
$fn$;

COMMENT ON FUNCTION deltapipe._staging(text) IS 'Private: resolve a staging table name handed out by deltapipe.stage().';
