CREATE OR REPLACE FUNCTION deltapipe._capture_columns(p_table regclass)
RETURNS text
LANGUAGE sql
STABLE
AS $fn$
-- The column signature of a captured table (name and type of every column but
-- deltapipe's own): a change of it (ALTER TABLE) makes the table's readers
-- refresh in full once.
SELECT coalesce(string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum), '')
  FROM pg_attribute a
 WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped AND a.attname NOT LIKE '\_dp\_%'
$fn$;

COMMENT ON FUNCTION deltapipe._capture_columns(regclass) IS
  'Private: the column signature (name type, ...) of a captured table; a change makes its readers refresh in full once.';
