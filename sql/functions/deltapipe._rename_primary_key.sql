CREATE OR REPLACE FUNCTION deltapipe._rename_primary_key(p_target text, p_from text, p_to text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
-- The primary key constraint p_from of table p_target renamed p_to (after a new
-- table was renamed over a model's: its constraint keeps the new table's name).
-- Citus renames a distributed table's constraint only through its index.
BEGIN
    IF deltapipe._is_distributed(p_target::regclass) THEN
        EXECUTE format('ALTER INDEX %I.%I RENAME TO %I',
                       (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE c.oid = p_target::regclass), p_from, p_to);
    ELSE
        EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', p_target, p_from, p_to);
    END IF;
END
$fn$;

COMMENT ON FUNCTION deltapipe._rename_primary_key(text, text, text) IS
  'Private: rename a table''s primary key constraint (through its index on a Citus distributed table).';
