CREATE OR REPLACE FUNCTION deltapipe._capture_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
-- AFTER TRUNCATE of a captured table (TG_ARGV[0]: its name in deltapipe.tracked):
-- a TRUNCATE has no transition table, so its rows are not logged; the table's
-- epoch moves instead, and every model reading it refreshes in full once, then
-- reads its change log again. deltapipe's own writes (deltapipe.writer set) skip it.
BEGIN
    IF coalesce(current_setting('deltapipe.writer', true), '') = '' THEN
        UPDATE deltapipe.tracked SET epoch = epoch + 1, writes = writes + 1 WHERE name = TG_ARGV[0];
    END IF;
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION deltapipe._capture_truncate() IS
  'Private: trigger after TRUNCATE of a captured table: its readers refresh in full once (the tracked epoch moves).';
