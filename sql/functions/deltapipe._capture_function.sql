CREATE OR REPLACE FUNCTION deltapipe._capture_function(p_name text)
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $fn$
-- The name (in schema deltapipe) of a captured table's own trigger function.
SELECT '_capture_' || left(md5(p_name), 16)
$fn$;

COMMENT ON FUNCTION deltapipe._capture_function(text) IS
  'Private: the name of a captured table''s trigger function (deltapipe._capture_<hash>).';
