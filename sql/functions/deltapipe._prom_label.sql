CREATE OR REPLACE FUNCTION deltapipe._prom_label(p_value text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $fn$
-- Escape a Prometheus label value: backslash, double quote and newline.
SELECT replace(replace(replace(coalesce(p_value, ''), E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n')
$fn$;

COMMENT ON FUNCTION deltapipe._prom_label(text) IS 'Private: escape a Prometheus label value.';
