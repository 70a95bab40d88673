CREATE OR REPLACE FUNCTION deltapipe._ensure_index(p_table text, p_column text)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
-- An affected-key refresh finds the rows of its affected keys by probing an index on
-- each restricted input column: make sure one exists (any index whose first column it
-- is). Built once (a cost of the table's size), then kept with the table; a table
-- rebuilt by a swap gets it again at its next affected-key refresh. Returns whether an
-- index was created. A missing table or column is left alone (the refresh itself
-- reports it).
DECLARE
    rel regclass := to_regclass(p_table);
    att smallint;
BEGIN
    IF rel IS NULL THEN
        RETURN false;
    END IF;
    SELECT a.attnum INTO att FROM pg_attribute a
     WHERE a.attrelid = rel AND a.attname = p_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF att IS NULL OR EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = rel AND i.indkey[0] = att) THEN
        RETURN false;
    END IF;
    BEGIN
        EXECUTE format('CREATE INDEX %I ON %s (%I)',
                       left((SELECT relname FROM pg_class WHERE oid = rel), 40) || '_dp_' || left(p_column, 16) || '_idx',
                       rel, p_column);
    EXCEPTION WHEN insufficient_privilege THEN
        RETURN false;  -- not the table's owner: the refresh runs without it (slower, still right)
    END;
    RETURN true;
END
$fn$;

COMMENT ON FUNCTION deltapipe._ensure_index(text, text) IS
  'Private: create an index on a table column (for an affected-key refresh''s probes) unless one starts with it.';
